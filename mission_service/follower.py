"""Follows the event log: projects each batch into the store, then fans it out.

Order per batch: commit to SQLite (with the checkpoint), resolve read-your-writes
waiters, hand the batch to live subscribers, then answer the workers whose STARTED
events it held (start_verdicts.py). So whatever a subscriber sees, a
GetMission on this replica already reflects. Events the store records as duplicates
(a second CREATED of one mission, a STARTED of an attempt already started, ...) are
handed to nobody, live or in a replay (``replay``): every reader sees the log without them.

A record that does not decode is skipped with a warning and counted in ``tally``;
the follower's position moves past it (the store's checkpoint follows with the next
event it applies), so a bad record neither stops the service nor is retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Protocol

from mission_service.recent import RecentEvents
from mission_service.start_verdicts import StartVerdictSender
from mission_service.store import MissionStore
from missions import codec
from missions.eventlog import ReadTally
from missions.v1 import events_pb2

__all__ = ["LogFollower", "ReadLog"]

log = logging.getLogger(__name__)

_MAX_BATCH = 500

BatchListener = Callable[[Sequence[events_pb2.MissionEvent]], None]


class ReadLog(Protocol):
    """Reads the log after a sequence, in order, then follows it (eventlog.read_log on a
    connection, or a fake one in tests)."""

    def __call__(
        self,
        after_sequence: int,
        *,
        attached: asyncio.Event | None = None,
        tally: ReadTally | None = None,
        gaps: bool = False,
    ) -> AsyncGenerator[events_pb2.MissionEvent, None]: ...


class LogFollower:
    """Keeps the store and the subscribers up to date with the log."""

    def __init__(
        self,
        read: ReadLog,
        store: MissionStore,
        on_batch: BatchListener,
        *,
        recent: RecentEvents | None = None,
        verdicts: StartVerdictSender | None = None,
    ) -> None:
        """``read``: how the follower and ``replay`` read the log; ``recent``: the window of
        latest events replays start from when they can (default bounds if None);
        ``verdicts``: answers each worker's STARTED events after each batch (None: nobody
        answers, for a follower that serves no workers)."""
        self._read = read
        self.recent = RecentEvents(store.checkpoint()) if recent is None else recent
        self._store = store
        self._on_batch = on_batch
        self._verdicts = verdicts
        self._waiters: dict[str, list[asyncio.Future[bool]]] = {}
        self.attached = asyncio.Event()
        self.position = store.checkpoint()
        self.tally = ReadTally()  # its skipped records are those that did not decode

    def expect(self, event_id: str) -> asyncio.Future[bool]:
        """A future resolved once the event has been applied to the store: True, or False when
        the store recorded it as a duplicate (it changed nothing)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(event_id, []).append(future)
        future.add_done_callback(lambda done: self._forget(event_id, done))
        return future

    @property
    def awaited(self) -> int:
        """Events someone waits to see applied (``expect``)."""
        return len(self._waiters)

    def _forget(self, event_id: str, future: asyncio.Future[bool]) -> None:
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
            if self._verdicts is not None:
                tasks.create_task(self._verdicts.run())

    async def _receive(self, inbox: asyncio.Queue[events_pb2.MissionEvent]) -> None:
        log.info("following the log after sequence %d", self.position)
        # With gaps: a record that does not decode still moves the position past it.
        events = self._read(self.position, attached=self.attached, tally=self.tally, gaps=True)
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                await inbox.put(event)

    async def _apply(self, inbox: asyncio.Queue[events_pb2.MissionEvent]) -> None:
        while True:
            batch = [await inbox.get()]
            while len(batch) < _MAX_BATCH and not inbox.empty():
                batch.append(inbox.get_nowait())
            self._commit(batch)
            if self._verdicts is not None:
                self._verdicts.flush()

    def _commit(self, batch: Sequence[events_pb2.MissionEvent]) -> None:
        """Apply a batch to the store, resolve its waiters and hand it to the subscribers."""
        batch = [event for event in batch if event.sequence > self.position]
        if not batch:
            return
        if batch[0].sequence > codec.next_record_start(self.position):
            # Past the start of the next record: the log's retention dropped what lies
            # between, so no replay may start there from memory.
            self.recent.restart(batch[0].sequence - 1)
        # Gaps (decoded events never lack an id) only move the position.
        events = [event for event in batch if event.id]
        duplicates = self._store.apply_batch(events, None if self._verdicts is None else self._verdicts.hear)
        self.position = batch[-1].sequence
        for event in events:
            for waiter in self._waiters.get(event.id, ()):
                if not waiter.done():
                    waiter.set_result(event.sequence not in duplicates)
        if duplicates:
            events = [event for event in events if event.sequence not in duplicates]
        if events:
            self.recent.extend(events)
            self._on_batch(events)

    async def replay(self, after_sequence: int) -> AsyncGenerator[events_pb2.MissionEvent, None]:
        """The log's events after ``after_sequence``, up to where this follower has applied it
        (callers stop there and continue with the live events: watch.watch).

        From the window of recent events when it reaches back that far, without a broker
        round trip. Otherwise from the log (read_log), each duplicate replaced by a gap (an
        event with only its sequence), and past the follower's position unfiltered.
        """
        recent = self.recent.after(after_sequence)
        if recent is not None:
            for event in recent:
                yield event
            return
        duplicates = self._store.duplicates_after(after_sequence)
        async with contextlib.aclosing(self._read(after_sequence)) as events:
            async for event in events:
                yield events_pb2.MissionEvent(sequence=event.sequence) if event.sequence in duplicates else event
