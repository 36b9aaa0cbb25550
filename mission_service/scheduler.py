"""Fires what is due on the leader: delayed missions (at its due time a SCHEDULED mission gets its
DUE, then its work message) and recurring schedules (at each firing time, a mission).

Due times live in the read model (SCHEDULED missions, indexed by due time), not in the
broker: RabbitMQ expires per-message TTLs only at the head of a queue, so a mission due in
a minute would wait behind one due next year, and its delayed-message plugin is not
installed everywhere. The log is durable and every replica projects it, so after any
restart (of the service, the broker, or a failover to another replica) the leader finds
the missions due in its own store.

One replica fires at a time: the reaper's leader (Reaper.leads). Around a failover two can
fire the same mission; the log keeps the first DUE and the other is a duplicate, which gets
no work message (MissionCommands.fire). Schedules are found the same way (their next firing
times, indexed in the read model) and fired by Schedules.fire, idempotent likewise.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

# The longest the scheduler sleeps between looks at the store: how late a mission can be
# after a new leader takes over, or when it is due sooner than anything seen before, and how
# soon one that could not be fired is tried again. A look is one indexed SQLite query.
_MAX_SLEEP_S = 0.25
# Missions being fired at once (their DUE events share log records, their confirms overlap).
_IN_FLIGHT = 1000


class _Named(Protocol):
    @property
    def id(self) -> str: ...


Due = TypeVar("Due", bound=_Named)


class Scheduler(Generic[Due]):
    """Fires what ``due`` finds due (missions or schedules) while ``leads()`` says this replica leads.

    Firings overlap: each look starts those due and not being fired already, without waiting
    for the ones before (a DUE and a work message each wait for a confirm and for the log),
    so a burst of missions due at once does not make the later ones wait in line.
    """

    def __init__(
        self,
        due: Callable[[float, int], Sequence[Due]],
        next_due: Callable[[float], float | None],
        leads: Callable[[], bool],
        fire: Callable[[Due], Coroutine[Any, Any, None]],
        clock: Callable[[], float] = time.time,  # wall clock, as due times are
        max_sleep: float = _MAX_SLEEP_S,
    ) -> None:
        """``due(at, limit)``: up to ``limit`` items due at or before ``at`` (epoch seconds), the
        earliest first; ``next_due(after)``: the earliest due time after ``after``, None if none."""
        self._due = due
        self._next_due = next_due
        self._leads = leads
        self._fire = fire
        self._clock = clock
        self._max_sleep = max_sleep
        self._firing: dict[str, asyncio.Task[None]] = {}  # by id

    async def run(self) -> None:
        """Look, then sleep until the next due time (at most ``max_sleep``); until cancelled."""
        try:
            while True:
                now = self._clock()
                if self._leads():
                    self.fire_due(now)
                upcoming = self._next_due(now)
                await asyncio.sleep(self._max_sleep if upcoming is None else min(self._max_sleep, upcoming - now))
        finally:
            for task in self._firing.values():
                task.cancel()  # a dispatch under way goes on without us (Dispatcher)

    def fire_due(self, now: float) -> list[asyncio.Task[None]]:
        """Start firing what is due at ``now`` and not being fired already; their tasks."""
        started = []
        for item in self._due(now, _IN_FLIGHT):
            if item.id in self._firing or len(self._firing) >= _IN_FLIGHT:
                continue
            task = asyncio.create_task(self._fire(item), name=f"fire {item.id}")
            self._firing[item.id] = task
            task.add_done_callback(functools.partial(self._fired, item.id))
            started.append(task)
        return started

    def _fired(self, item_id: str, task: asyncio.Task[None]) -> None:
        del self._firing[item_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            # Still due (a mission SCHEDULED, a schedule's firing time unrecorded, or what
            # follows once the log shows its event): the next look tries it again.
            log.warning("%s: not fired at its due time (%s); trying again", item_id, error)
