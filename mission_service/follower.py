"""Follows the event log: projects each batch into the store, then fans it out.

Order per batch: commit to SQLite (with the checkpoint), resolve read-your-writes
waiters, then hand the batch to live subscribers. So whatever a subscriber sees, a
GetMission on this replica already reflects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from aio_pika.abc import AbstractConnection

from mission_service.store import MissionStore
from missions.eventlog import read_log
from missions.topology import Topology
from missions.v1 import events_pb2

__all__ = ["LogFollower"]

log = logging.getLogger(__name__)

_MAX_BATCH = 500

BatchListener = Callable[[Sequence[events_pb2.MissionEvent]], None]


class LogFollower:
    """Keeps the store and the subscribers up to date with the log."""

    def __init__(
        self, connection: AbstractConnection, names: Topology, store: MissionStore, on_batch: BatchListener
    ) -> None:
        self._connection = connection
        self._names = names
        self._store = store
        self._on_batch = on_batch
        self._waiters: dict[str, asyncio.Future[events_pb2.MissionEvent]] = {}
        self.attached = asyncio.Event()
        self.position = store.checkpoint()

    def expect(self, event_id: str) -> asyncio.Future[events_pb2.MissionEvent]:
        """A future resolved with the event once it has been applied to the store."""
        future: asyncio.Future[events_pb2.MissionEvent] = asyncio.get_running_loop().create_future()
        self._waiters[event_id] = future
        future.add_done_callback(lambda _: self._waiters.pop(event_id, None))
        return future

    async def run(self) -> None:
        """Consume the log until cancelled."""
        inbox: asyncio.Queue[events_pb2.MissionEvent] = asyncio.Queue(maxsize=_MAX_BATCH * 4)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._receive(inbox))
            tasks.create_task(self._apply(inbox))

    async def _receive(self, inbox: asyncio.Queue[events_pb2.MissionEvent]) -> None:
        log.info("following %s after sequence %d", self._names.log_queue, self.position)
        async with contextlib.aclosing(
            read_log(self._connection, self._names, self.position, attached=self.attached)
        ) as events:
            async for event in events:
                await inbox.put(event)

    async def _apply(self, inbox: asyncio.Queue[events_pb2.MissionEvent]) -> None:
        while True:
            batch = [await inbox.get()]
            while len(batch) < _MAX_BATCH and not inbox.empty():
                batch.append(inbox.get_nowait())
            batch = [event for event in batch if event.sequence > self.position]
            if not batch:
                continue
            self._store.apply_batch(batch)
            self.position = batch[-1].sequence
            for event in batch:
                waiter = self._waiters.get(event.id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)
            self._on_batch(batch)
