"""The worker registry: what the heartbeats on ``ns.workers`` say about each worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from google.protobuf.message import DecodeError

from missions.topology import Topology
from missions.v1 import worker_pb2

__all__ = ["WorkerRegistry"]

log = logging.getLogger(__name__)

W = worker_pb2

# A worker silent for this many heartbeat intervals is LOST.
LOST_AFTER_INTERVALS = 3
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

    def record(self, worker: worker_pb2.Worker) -> None:
        self._workers[worker.id] = _Seen(worker, self._clock())

    def list(self, include_gone: bool = False) -> list[worker_pb2.Worker]:
        now = self._clock()
        listed = []
        for worker_id in sorted(self._workers):
            seen = self._workers[worker_id]
            silent = now - seen.received
            if silent > _FORGET_S:
                del self._workers[worker_id]
                continue
            worker = worker_pb2.Worker()
            worker.CopyFrom(seen.worker)
            interval = seen.worker.heartbeat_interval.ToTimedelta().total_seconds() or 5.0
            if worker.state != W.WORKER_STATE_STOPPING and silent > LOST_AFTER_INTERVALS * interval:
                worker.state = W.WORKER_STATE_LOST
            gone = worker.state != W.WORKER_STATE_ACTIVE
            if gone and silent > _GONE_LISTED_S and not include_gone:
                continue
            listed.append(worker)
        return listed

    def active(self) -> int:
        return sum(1 for worker in self.list() if worker.state == W.WORKER_STATE_ACTIVE)

    async def start(self, connection: AbstractConnection, names: Topology) -> None:
        """Bind a private queue to the workers exchange and record every heartbeat from now on."""
        channel = await connection.channel()
        exchange = await channel.get_exchange(names.workers_exchange)
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        await queue.bind(exchange)
        await queue.consume(self._on_heartbeat, no_ack=True)

    async def _on_heartbeat(self, message: AbstractIncomingMessage) -> None:
        try:
            self.record(worker_pb2.Worker.FromString(message.body))
        except DecodeError:
            log.warning("ignoring a malformed heartbeat")
