"""The worker registry: what the heartbeats on ``ns.workers`` say about each worker session.

A session is one run of one worker process; a restarted worker (even with the same
``--worker-id``) is a new session, and its previous session ends up LOST.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from google.protobuf.message import DecodeError

from missions.amqp import declare_heartbeat_queue
from missions.topology import Topology
from missions.v1 import worker_pb2

__all__ = ["WorkerRegistry"]

log = logging.getLogger(__name__)

W = worker_pb2

# A worker silent for this many heartbeat intervals is LOST.
LOST_AFTER_INTERVALS = 3
# Heartbeat interval assumed for a session never heard from (the worker's default).
_DEFAULT_INTERVAL_S = 5.0
# How long a session may go unheard of, from its first sign of life, before it counts as lost.
UNKNOWN_GRACE_S = LOST_AFTER_INTERVALS * _DEFAULT_INTERVAL_S
# LOST or STOPPING workers are listed for this long (longer with include_gone) ...
_GONE_LISTED_S = 10 * 60
# ... and forgotten after this long.
_FORGET_S = 60 * 60


@dataclass(slots=True)
class _Seen:
    worker: worker_pb2.Worker
    received: float  # time.monotonic() of the last heartbeat


class WorkerRegistry:
    """Keeps the last heartbeat of every worker and derives its state."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._workers: dict[str, _Seen] = {}
        self._clock = clock
        self._since = clock()
        self._excused_until = 0.0

    def record(self, worker: worker_pb2.Worker) -> None:
        self._workers[worker.session or worker.id] = _Seen(worker, self._clock())

    def knows(self, session: str) -> bool:
        return session in self._workers

    def is_lost(self, session: str) -> bool:
        """True when ``session`` has been silent for three of its heartbeat intervals.

        A session never heard from counts as lost once this registry has listened for
        three default intervals (so a restarted service does not reap live workers).
        """
        now = self._clock()
        if now < self._excused_until:
            return False
        seen = self._workers.get(session)
        if seen is None:
            return now - self._since > UNKNOWN_GRACE_S
        interval = seen.worker.heartbeat_interval.ToTimedelta().total_seconds() or _DEFAULT_INTERVAL_S
        return now - seen.received > LOST_AFTER_INTERVALS * interval

    def list(self, include_gone: bool = False) -> list[worker_pb2.Worker]:
        """The workers by id, with their state derived; forgets sessions silent for an hour."""
        now = self._clock()
        listed = []
        for session, seen in sorted(self._workers.items(), key=lambda item: (item[1].worker.id, item[0])):
            silent = now - seen.received
            if silent > _FORGET_S:
                del self._workers[session]
                continue
            worker = worker_pb2.Worker()
            worker.CopyFrom(seen.worker)
            if self.is_lost(session):
                worker.state = W.WORKER_STATE_LOST
            gone = worker.state != W.WORKER_STATE_ACTIVE
            if gone and silent > _GONE_LISTED_S and not include_gone:
                continue
            listed.append(worker)
        return listed

    def active(self) -> int:
        return sum(1 for worker in self.list() if worker.state == W.WORKER_STATE_ACTIVE)

    def active_by_type(self) -> dict[str, int]:
        """ACTIVE workers per mission type their heartbeats list; types with none are absent."""
        counts: collections.Counter[str] = collections.Counter()
        for worker in self.list():
            if worker.state == W.WORKER_STATE_ACTIVE:
                counts.update(set(worker.handler_types))
        return dict(counts)

    def excuse(self) -> None:
        """This service could not hear (its own connection was down): judge no session lost
        until the workers, which reconnect on their own schedule, have had time to be heard."""
        now = self._clock()
        self._since = now
        self._excused_until = now + UNKNOWN_GRACE_S

    async def start(self, connection: AbstractRobustConnection, names: Topology) -> None:
        """Record every heartbeat from now on, from a queue of this registry's own."""
        channel = await connection.channel()
        queue = await declare_heartbeat_queue(channel, names)
        await queue.consume(self._on_heartbeat, no_ack=True)

        def excuse(*_: object) -> None:
            self.excuse()

        # From the moment the connection drops (a sweep may run before the reconnect
        # callbacks do) and again once it is back.
        connection.close_callbacks.add(excuse)
        connection.reconnect_callbacks.add(excuse)

    async def _on_heartbeat(self, message: AbstractIncomingMessage) -> None:
        try:
            self.record(worker_pb2.Worker.FromString(message.body))
        except DecodeError:
            log.warning("ignoring a malformed heartbeat")
