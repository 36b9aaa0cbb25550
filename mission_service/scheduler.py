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
import logging
import time
from collections.abc import Awaitable, Callable

from mission_service.store import MissionStore
from missions.v1 import mission_pb2

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

# The longest the scheduler sleeps between looks at the store: how late a mission can be
# after a new leader takes over, or when it is due sooner than anything seen before. A
# look is one indexed SQLite query.
_MAX_SLEEP_S = 0.25
# Missions fired at once (their DUE events share log records, their confirms overlap).
_BATCH = 1000

Fire = Callable[[mission_pb2.Mission], Awaitable[None]]


class Scheduler:
    """Fires the SCHEDULED missions that are due while ``leads()`` says this replica leads."""

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

    async def run(self) -> None:
        """Sleep until the next due time (at most ``max_sleep``), fire what is due; until cancelled."""
        failed = False
        while True:
            await asyncio.sleep(self._max_sleep if failed else self._pause())
            failed = self._leads() and await self.fire_due() < 0

    def _pause(self) -> float:
        due = self._store.next_due()
        return self._max_sleep if due is None else min(self._max_sleep, max(0.0, due - self._clock()))

    async def fire_due(self) -> int:
        """Fire the missions due now: how many, or -1 when one could not be (it stays
        SCHEDULED, and the next look tries it again)."""
        due = self._store.due(self._clock(), _BATCH)
        outcomes = await asyncio.gather(*(self._fire(mission) for mission in due), return_exceptions=True)
        failed = [(mission, outcome) for mission, outcome in zip(due, outcomes, strict=True) if outcome is not None]
        for mission, outcome in failed:
            if not isinstance(outcome, Exception):
                raise outcome
            log.warning("mission %s: not fired at its due time (%s); trying again", mission.id, outcome)
        return -1 if failed else len(due)
