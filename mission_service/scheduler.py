"""Fires delayed missions: at its due time a SCHEDULED mission gets its DUE, then its work message.

Due times live in the read model (SCHEDULED missions, indexed by due time), not in the
broker: RabbitMQ expires per-message TTLs only at the head of a queue, so a mission due in
a minute would wait behind one due next year, and its delayed-message plugin is not
installed everywhere. The log is durable and every replica projects it, so after any
restart (of the service, the broker, or a failover to another replica) the leader finds
the missions due in its own store.

One replica fires at a time: the reaper's leader (Reaper.leads). Around a failover two can
fire the same mission; the log keeps the first DUE and the other is a duplicate, which gets
no work message (MissionCommands.fire).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from mission_service.store import MissionStore
from missions.v1 import mission_pb2

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

# The longest the scheduler sleeps between looks at the store: how late a mission can be
# after a new leader takes over, or when it is due sooner than anything seen before, and how
# soon one that could not be fired is tried again. A look is one indexed SQLite query.
_MAX_SLEEP_S = 0.25
# Missions being fired at once (their DUE events share log records, their confirms overlap).
_IN_FLIGHT = 1000

Fire = Callable[[mission_pb2.Mission], Coroutine[Any, Any, None]]


class Scheduler:
    """Fires the SCHEDULED missions that are due while ``leads()`` says this replica leads.

    Firings overlap: each look starts those due and not being fired already, without waiting
    for the ones before (a DUE and a work message each wait for a confirm and for the log),
    so a burst of missions due at once does not make the later ones wait in line.
    """

    def __init__(
        self,
        store: MissionStore,
        leads: Callable[[], bool],
        fire: Fire,
        clock: Callable[[], float] = time.time,  # wall clock, as due times are
        max_sleep: float = _MAX_SLEEP_S,
    ) -> None:
        self._store = store
        self._leads = leads
        self._fire = fire
        self._clock = clock
        self._max_sleep = max_sleep
        self._firing: dict[str, asyncio.Task[None]] = {}  # by mission id

    async def run(self) -> None:
        """Look, then sleep until the next due time (at most ``max_sleep``); until cancelled."""
        try:
            while True:
                now = self._clock()
                if self._leads():
                    self.fire_due(now)
                upcoming = self._store.next_due(after=now)
                await asyncio.sleep(self._max_sleep if upcoming is None else min(self._max_sleep, upcoming - now))
        finally:
            for task in self._firing.values():
                task.cancel()  # a dispatch under way goes on without us (Dispatcher)

    def fire_due(self, now: float) -> list[asyncio.Task[None]]:
        """Start firing the missions due at ``now`` that are not being fired already; their tasks."""
        started = []
        for mission in self._store.due(now, _IN_FLIGHT):
            if mission.id in self._firing or len(self._firing) >= _IN_FLIGHT:
                continue
            task = asyncio.create_task(self._fire(mission), name=f"fire {mission.id}")
            self._firing[mission.id] = task
            task.add_done_callback(functools.partial(self._fired, mission.id))
            started.append(task)
        return started

    def _fired(self, mission_id: str, task: asyncio.Task[None]) -> None:
        del self._firing[mission_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            # Still SCHEDULED (or its DUE's work message follows once the log shows it):
            # the next look tries it again.
            log.warning("mission %s: not fired at its due time (%s); trying again", mission_id, error)
