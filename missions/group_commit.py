"""Group commit: the events published while a log record is being confirmed share the next one.

Per routing key, at most one record is in flight. An event that finds its key idle leaves
at once, alone (no timer: at low load nothing waits); events that arrive while a record
is in flight wait for its confirm and then leave together, as one EventBatch record.
Under load a record carries as many events as arrived during one confirm round trip, so
the broker stores, confirms and delivers one record where it used to handle many: its
cost per event falls as the load rises. Each event's publisher still awaits its
confirm, so an event published after another one's confirm (a mission's next event)
lands after it in the log.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aio_pika

from missions import codec
from missions.errors import BrokerUnavailableError
from missions.v1 import events_pb2

__all__ = ["MAX_RECORD_BYTES", "GroupCommit"]

# A record carries at most this many bytes of events (besides codec.SEQUENCES_PER_RECORD
# events): a larger event leaves alone.
MAX_RECORD_BYTES = 1024 * 1024

Send = Callable[[aio_pika.Message, str], Awaitable[None]]


@dataclass
class _Lane:
    """The events of one routing key waiting for the record in flight, and who sends them."""

    waiting: deque[tuple[events_pb2.MissionEvent, asyncio.Future[None]]] = field(default_factory=deque)
    sender: asyncio.Task[None] | None = None


class GroupCommit:
    """Publishes events through ``send`` (a confirmed publish of a message with a routing
    key), one record in flight per routing key."""

    def __init__(self, send: Send, max_events: int = codec.SEQUENCES_PER_RECORD) -> None:
        self._send = send
        self._max_events = max_events
        self._lanes: dict[str, _Lane] = {}
        self._closed = False

    async def publish(self, event: events_pb2.MissionEvent, routing_key: str) -> None:
        """Return once the record holding ``event`` is confirmed; raise BrokerUnavailableError if it is not.

        A caller cancelled before its event was taken into a record withdraws the event: it
        must not reach the log later, after the mission's next event.
        """
        if self._closed:
            raise BrokerUnavailableError("the publisher closed")
        lane = self._lanes.get(routing_key)
        if lane is None:
            lane = self._lanes[routing_key] = _Lane()
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.waiting.append((event, confirmed))
        if lane.sender is None:
            lane.sender = asyncio.create_task(self._drain(routing_key, lane))
        try:
            await confirmed
        except asyncio.CancelledError:
            _withdraw(lane.waiting, confirmed)
            raise

    async def close(self) -> None:
        """Stop sending; whatever still waits, and every later publish, fails with BrokerUnavailableError."""
        self._closed = True
        lanes = list(self._lanes.values())
        senders = [lane.sender for lane in lanes if lane.sender is not None]
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        # A sender cancelled before its first step never ran its finally: settle what it left.
        for lane in lanes:
            _settle(list(lane.waiting), BrokerUnavailableError("the publisher closed"))
            lane.waiting.clear()
        self._lanes.clear()

    async def _drain(self, routing_key: str, lane: _Lane) -> None:
        """Send records until nothing waits."""
        batch: list[tuple[events_pb2.MissionEvent, asyncio.Future[None]]] = []
        try:
            while lane.waiting:
                batch = self._next_batch(lane)
                events = [event for event, _ in batch]
                message = codec.encode(events[0]) if len(events) == 1 else codec.encode_batch(events)
                try:
                    await self._send(message, routing_key)
                except BrokerUnavailableError as exc:
                    _settle(batch, exc)
                else:
                    _settle(batch, None)
                batch = []
        finally:
            # Cancelled (close): the record in flight and everything behind it are unconfirmed.
            _settle([*batch, *lane.waiting], BrokerUnavailableError("the publisher closed"))
            lane.waiting.clear()
            if self._lanes.get(routing_key) is lane:
                del self._lanes[routing_key]

    def _next_batch(self, lane: _Lane) -> list[tuple[events_pb2.MissionEvent, asyncio.Future[None]]]:
        """The oldest waiting events that fit in one record (at least one)."""
        batch = [lane.waiting.popleft()]
        size = batch[0][0].ByteSize()
        while lane.waiting and len(batch) < self._max_events:
            size += lane.waiting[0][0].ByteSize()
            if size > MAX_RECORD_BYTES:
                break
            batch.append(lane.waiting.popleft())
        return batch


def _withdraw(waiting: deque[tuple[events_pb2.MissionEvent, asyncio.Future[None]]], confirmed: object) -> None:
    """Take the event whose waiter is ``confirmed`` out of ``waiting``, if no record took it yet."""
    for index, (_, pending) in enumerate(waiting):
        if pending is confirmed:
            del waiting[index]
            return


def _settle(
    batch: list[tuple[events_pb2.MissionEvent, asyncio.Future[None]]], error: BrokerUnavailableError | None
) -> None:
    """Tell each waiter of ``batch`` its record's fate (a waiter that gave up is skipped)."""
    for _, confirmed in batch:
        if confirmed.done():
            continue
        if error is None:
            confirmed.set_result(None)
        else:
            confirmed.set_exception(BrokerUnavailableError(str(error)))
