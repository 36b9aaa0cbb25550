"""Follows the event log: projects each batch into the store, then fans it out.

Order per batch: commit to SQLite (with the checkpoint), resolve read-your-writes
waiters, then hand the batch to live subscribers. So whatever a subscriber sees, a
GetMission on this replica already reflects.

A record that does not decode is skipped with a warning and counted in ``skipped``;
the follower's position moves past it (the store's checkpoint follows with the next
event it applies), so a bad record neither stops the service nor is retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from mission_service.store import MissionStore
from missions import codec
from missions.errors import DecodeError
from missions.eventlog import read_stream
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
        self._waiters: dict[str, list[asyncio.Future[events_pb2.MissionEvent]]] = {}
        self.attached = asyncio.Event()
        self.position = store.checkpoint()
        self.skipped = 0  # log records that did not decode

    def expect(self, event_id: str) -> asyncio.Future[events_pb2.MissionEvent]:
        """A future resolved with the event once it has been applied to the store."""
        future: asyncio.Future[events_pb2.MissionEvent] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(event_id, []).append(future)
        future.add_done_callback(lambda done: self._forget(event_id, done))
        return future

    def _forget(self, event_id: str, future: asyncio.Future[events_pb2.MissionEvent]) -> None:
        waiting = self._waiters.get(event_id, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._waiters.pop(event_id, None)

    async def run(self) -> None:
        """Consume the log until cancelled."""
        inbox: asyncio.Queue[events_pb2.MissionEvent] = asyncio.Queue(maxsize=_MAX_BATCH * 4)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._receive(inbox))
            tasks.create_task(self._apply(inbox))

    async def _receive(self, inbox: asyncio.Queue[events_pb2.MissionEvent]) -> None:
        log.info("following %s after sequence %d", self._names.log_queue, self.position)
        # The raw stream rather than read_log, which skips undecodable records unseen: the
        # follower counts them and moves its position past them.
        records = read_stream(
            self._connection, self._names.log_queue, self.position, attached=self.attached, strict=self.position > 0
        )
        async with contextlib.aclosing(records) as stream:
            async for offset, message in stream:
                await inbox.put(self._event_at(offset, message))

    def _event_at(self, offset: int, message: AbstractIncomingMessage) -> events_pb2.MissionEvent:
        """The event of a log record; for one that does not decode, a gap: an event without id."""
        try:
            event = codec.decode(message.body, message.headers, message.type)
        except DecodeError as exc:
            self.skipped += 1
            log.warning("skipping undecodable log record at sequence %d: %s", offset + 1, exc)
            event = events_pb2.MissionEvent()
        event.sequence = offset + 1
        return event

    async def _apply(self, inbox: asyncio.Queue[events_pb2.MissionEvent]) -> None:
        while True:
            batch = [await inbox.get()]
            while len(batch) < _MAX_BATCH and not inbox.empty():
                batch.append(inbox.get_nowait())
            self._commit(batch)

    def _commit(self, batch: Sequence[events_pb2.MissionEvent]) -> None:
        """Apply a batch to the store, resolve its waiters and hand it to the subscribers."""
        batch = [event for event in batch if event.sequence > self.position]
        if not batch:
            return
        # Gaps (decoded events never lack an id) only move the position.
        events = [event for event in batch if event.id]
        self._store.apply_batch(events)
        self.position = batch[-1].sequence
        for event in events:
            for waiter in self._waiters.get(event.id, ()):
                if not waiter.done():
                    waiter.set_result(event)
        if events:
            self._on_batch(events)
