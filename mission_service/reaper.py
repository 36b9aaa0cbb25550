"""Declares attempts lost when their worker's session falls silent, and retries them.

Workers ack a delivery once its attempt has STARTED, so when a worker dies mid-mission
nothing comes back from the broker: the attempt is recovered here instead. A RUNNING
mission whose worker session is LOST (no heartbeat for three intervals) gets the
outcome a worker would have published for a failed attempt, with the retryable error
``WorkerLost`` and no backoff: FAILED + RETRYING, or FAILED + DEAD_LETTERED when its
attempts are used up. A mission that kills its worker every time thus ends up in the
dead-letter queue after ``max_attempts`` deliveries. A mission whose worker was lost
between its last attempt's FAILED and DEAD_LETTERED gets the DEAD_LETTERED.

One replica sweeps at a time. Every replica publishes a tick into ``ns.leader``, a
queue with a single active consumer; only the active consumer receives ticks, and a
tick triggers a sweep. Event ids are derived from (mission, attempt), so the rare
double sweep during a leadership change publishes the same ids twice. The ticks also say
whether this replica leads (``leads``), which the scheduler of delayed missions asks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from mission_service.store import MissionStore
from mission_service.worker_registry import UNKNOWN_GRACE_S, WorkerRegistry
from missions.amqp import broker_call, close_channel, declare_leader_queue
from missions.errors import BrokerUnavailableError
from missions.events import new_event
from missions.outcomes import EventFactory, Outcome, dead_lettered, outcome_events
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2

__all__ = ["WORKER_LOST", "Reaper"]

log = logging.getLogger(__name__)

WORKER_LOST = mission_pb2.MissionError(
    type="WorkerLost",
    message="the worker running this attempt stopped sending heartbeats (crashed, killed or cut off)",
    retryable=True,
)
_EVENT_IDS = uuid.UUID("0b1d6c3e-8f7a-5e2d-9c4b-1a3f5e7d9b2c")
_MAX_SWEEP = 10_000
# How long a FAILED for good waits for its DEAD_LETTERED before the reaper publishes one.
_STRANDED_GRACE_S = 10.0
# Intervals without a tick after which a replica no longer counts itself the leader.
_LEADERSHIP_TICKS = 3

Publish = Callable[[events_pb2.MissionEvent, int | None], Awaitable[None]]


class Reaper:
    """Finds RUNNING missions of lost worker sessions and fails their attempts."""

    def __init__(
        self,
        store: MissionStore,
        workers: WorkerRegistry,
        publish: Publish,
        source: str,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._now = now  # wall clock, as event times are
        self._store = store
        self._workers = workers
        self._publish = publish
        self._source = source
        self._last_sweep = 0.0
        self._last_tick = -math.inf  # monotonic
        self._period = 1.0

    async def sweep(self) -> int:
        """One pass; returns the number of attempts declared lost or dead-lettered."""
        running = self._store.list(
            states=[mission_pb2.MISSION_STATE_RUNNING], mission_type="", after_created_sequence=0, limit=_MAX_SWEEP
        )
        lost = [mission for mission in running.missions if self._lost(mission)]
        for mission in lost:
            await self._fail(mission)
        # A worker that died between an attempt's final FAILED and its DEAD_LETTERED left
        # the mission ended but never final: no dead-letter entry, watchers waiting forever.
        stranded = [mission for mission in self._store.stranded(_MAX_SWEEP) if self._stranded(mission)]
        for mission in stranded:
            await self._dead_letter(mission)
        return len(lost) + len(stranded)

    def _lost(self, mission: mission_pb2.Mission) -> bool:
        """Whether every worker session that started the mission's current attempt is lost.

        Almost always one session. Two while copies of one work message raced to start: the
        one the service refused withdraws, but until its withdrawal is in the log its
        session counts too (MissionStore.starters)."""
        if not self._session_lost(mission, mission.worker_session):
            return False
        starters = self._store.starters(mission)
        # None left: the shown worker withdrew (only in logs of earlier versions, whose
        # workers went by the control stream's order), and the next STARTED is on its way.
        return bool(starters) and all(self._session_lost(mission, session) for _, session in starters)

    def _session_lost(self, mission: mission_pb2.Mission, session: str) -> bool:
        if not session:
            return False
        if not self._workers.knows(session):
            # A worker that just started may have STARTED a mission before its first
            # heartbeat got here: give an unknown session time to be heard from.
            started = mission.start_time.ToNanoseconds() / 1e9
            if self._now() - started < UNKNOWN_GRACE_S:
                return False
        return self._workers.is_lost(session)

    def _stranded(self, mission: mission_pb2.Mission) -> bool:
        # Its DEAD_LETTERED may just be on its way (published by a sweep a moment ago,
        # not yet applied by a follower running behind): give it time to arrive.
        failed_at = mission.end_time.ToNanoseconds() / 1e9
        return self._now() - failed_at >= _STRANDED_GRACE_S and self._lost(mission)

    async def _fail(self, mission: mission_pb2.Mission) -> None:
        log.warning(
            "mission %s attempt %d lost with worker %s (session %s)",
            mission.id,
            mission.attempt,
            mission.worker_id,
            mission.worker_session,
        )
        outcome = Outcome(timedelta(0), error=WORKER_LOST)
        for follow_up in outcome_events(mission, outcome, self._events_of(mission), lambda _: timedelta(0)):
            await self._publish(follow_up, mission.priority)

    async def _dead_letter(self, mission: mission_pb2.Mission) -> None:
        log.warning(
            "mission %s attempt %d failed for good, but its worker %s (session %s) was lost before dead-lettering it",
            mission.id,
            mission.attempt,
            mission.worker_id,
            mission.worker_session,
        )
        # The second event of the attempt's outcome: if this service published the FAILED
        # (a lost attempt) and died before its DEAD_LETTERED, the id is the same one again.
        event = self._events_of(mission, after=1)
        await self._publish(dead_lettered(mission, mission.error, event), mission.priority)

    def _events_of(self, mission: mission_pb2.Mission, after: int = 0) -> EventFactory:
        """Events of ``mission``'s current attempt with ids that are the same on every replica
        and every sweep: the ``after + 1``-th, ``after + 2``-th... of the attempt."""
        serial = after

        def event(kind: events_pb2.EventType.ValueType) -> events_pb2.MissionEvent:
            nonlocal serial
            made = new_event(mission, kind, source=self._source, correlation_id=mission.correlation_id or mission.id)
            serial += 1
            made.id = str(uuid.uuid5(_EVENT_IDS, f"{mission.id}/{mission.redrive_count}/{mission.attempt}/{serial}"))
            return made

        return event

    def leads(self) -> bool:
        """Whether this replica is the leader: it received a tick within the last few intervals.
        For a moment after a failover two replicas can both think so (the old leader until
        its ticks are overdue): what either does as leader must be harmless twice."""
        return time.monotonic() - self._last_tick < _LEADERSHIP_TICKS * self._period

    async def run(self, connection: AbstractConnection, names: Topology, interval: timedelta) -> None:
        """Tick and sweep (when this replica is the active consumer) until cancelled."""
        period = self._period = interval.total_seconds()
        channel = await connection.channel()
        try:
            queue = await declare_leader_queue(channel, names, int(period * 1000))
            await queue.consume(self._on_tick, no_ack=True)
            while True:
                try:
                    with broker_call("tick not published"):
                        await channel.default_exchange.publish(
                            aio_pika.Message(b"tick"), routing_key=names.leader_queue
                        )
                except BrokerUnavailableError as exc:
                    # The robust channel comes back with the connection; tick again then.
                    log.debug("%s", exc)
                await asyncio.sleep(period)
        finally:
            await close_channel(channel)

    async def _on_tick(self, message: AbstractIncomingMessage) -> None:
        # Every replica ticks; sweep at most about once per interval.
        now = self._last_tick = time.monotonic()
        if now - self._last_sweep < 0.5:
            return
        self._last_sweep = now
        try:
            await self.sweep()
        except Exception:
            log.exception("sweep for lost workers failed; retrying at the next tick")
