"""What a worker knows about missions beyond their work messages, from the control stream.

The control stream (``ns.control``) carries the events that move a mission past a work
message: STARTED (attempt n is taken by a worker), RETRYING (attempt n is over),
COMPLETED, DEAD_LETTERED, CANCELLED (the mission is over) and REDRIVEN (a new
generation starts). A work message is *taken* when its attempt already started or is
over, when its mission ended, or when a newer generation exists; the consumer drops
such a message without running it. That is how a cancelled queued mission never
starts. An attempt's outcome is published only while the attempt is not *over* (a
cancellation, or the service declaring its worker lost, ends it first).

Copies of one work message (a redelivery, a keyed retry dispatching again) that two
workers start in the same instant both publish STARTED before either has read the
other's. The stream has one order for every reader, so the *first* STARTED of an
attempt here decides: only its worker runs the attempt (``expect``, ``started_by``).

Memory is bounded: the ledger keeps every mission that has not ended, but only the
``remember_finished`` most recently ended ones (as Celery bounds its revoked-task set).
A work message of a mission forgotten that way is no longer recognised as stale: a
cancelled mission queued behind more than that many others finishing could still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from missions import codec
from missions.amqp import broker_call
from missions.errors import BrokerUnavailableError, DecodeError
from missions.eventlog import read_stream
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2

__all__ = ["DEFAULT_REMEMBER_FINISHED", "MissionLedger"]

# About 37 MB of ledger per worker (~370 bytes per ended mission, its id included; tracemalloc).
DEFAULT_REMEMBER_FINISHED = 100_000

log = logging.getLogger(__name__)

E = events_pb2
_MARKER_HEADER = "x-missions-marker"

CancelListener = Callable[[events_pb2.MissionEvent], None]


@dataclass(slots=True)
class _Entry:
    generation: int = 0
    started: int = 0  # highest attempt known to have started
    started_by: str = ""  # the worker session whose STARTED of that attempt came first
    over: int = 0  # highest attempt known to be over
    final: bool = False


class MissionLedger:
    """Per mission: its generation, the attempts started and over, and whether it ended."""

    def __init__(self, remember_finished: int = DEFAULT_REMEMBER_FINISHED) -> None:
        self._missions: dict[str, _Entry] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()  # ended missions, the latest last
        self._remember_finished = remember_finished
        self._cancel_listeners: list[CancelListener] = []
        self._echoes: dict[str, asyncio.Future[None]] = {}  # by event id: see expect
        self.caught_up = asyncio.Event()

    def __len__(self) -> int:
        return len(self._missions)

    def on_cancel(self, listener: CancelListener) -> None:
        self._cancel_listeners.append(listener)

    def expect(self, event_id: str) -> asyncio.Future[None]:
        """A future resolved once the control stream has shown the event with this id."""
        echo: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._echoes[event_id] = echo
        echo.add_done_callback(lambda _: self._echoes.pop(event_id, None))
        return echo

    def observe(self, event: events_pb2.MissionEvent) -> None:
        self._observe(event)
        echo = self._echoes.get(event.id)
        if echo is not None and not echo.done():
            echo.set_result(None)

    def _observe(self, event: events_pb2.MissionEvent) -> None:
        entry = self._missions.get(event.mission_id)
        if entry is None or event.generation > entry.generation:
            entry = self._new_entry(event.mission_id, event.generation)
        elif event.generation < entry.generation:
            return  # a late event of a generation that has been redriven since
        kind = event.WhichOneof("details")
        if kind == "started":
            # The first STARTED of an attempt stands; a later one (a copy's) and a
            # withdrawal change nothing.
            if event.attempt > entry.started and not event.started.withdrawn:
                entry.started = event.attempt
                entry.started_by = event.started.worker_session
        elif kind == "retrying":
            entry.over = max(entry.over, event.attempt)
        elif kind in ("completed", "dead_lettered", "cancelled"):
            entry.final = True
            self._ended(event.mission_id)
            if kind == "cancelled":
                for listener in self._cancel_listeners:
                    listener(event)

    def enter(self, mission: mission_pb2.Mission) -> None:
        """Note that ``mission``'s generation exists (its REDRIVEN may not have been read yet)."""
        entry = self._missions.get(mission.id)
        if entry is None or mission.redrive_count > entry.generation:
            self._new_entry(mission.id, mission.redrive_count)

    def _new_entry(self, mission_id: str, generation: int) -> _Entry:
        self._finished.pop(mission_id, None)  # a new generation has not ended
        entry = self._missions[mission_id] = _Entry(generation)
        return entry

    def _ended(self, mission_id: str) -> None:
        self._finished[mission_id] = None
        self._finished.move_to_end(mission_id)
        while len(self._finished) > self._remember_finished:
            forgotten, _ = self._finished.popitem(last=False)
            del self._missions[forgotten]

    def _entry(self, mission: mission_pb2.Mission) -> _Entry | None:
        """The ledger entry for ``mission``'s generation; None when it is newer than known."""
        entry = self._missions.get(mission.id)
        if entry is None or mission.redrive_count > entry.generation:
            return None
        return entry

    def is_taken(self, mission: mission_pb2.Mission, session: str = "") -> bool:
        """True when the work message for ``mission`` (at its attempt) must not run.

        An attempt that ``session`` (the asking worker) itself started is not taken: the
        worker only asks about work it is not running, so its STARTED was published but
        reported unconfirmed, and the delivery came back.
        """
        entry = self._entry(mission)
        if entry is None:
            return False
        if mission.redrive_count < entry.generation or entry.final or mission.attempt <= entry.over:
            return True
        if mission.attempt == entry.started and session and entry.started_by == session:
            return False
        return mission.attempt <= entry.started

    def started_by(self, mission: mission_pb2.Mission) -> str:
        """The worker session whose STARTED of ``mission``'s attempt came first; "" when the
        attempt has not started, or a later attempt or generation has."""
        entry = self._entry(mission)
        if entry is None or entry.generation != mission.redrive_count or entry.started != mission.attempt:
            return ""
        return entry.started_by

    def is_over(self, mission: mission_pb2.Mission) -> bool:
        """True when ``mission``'s current attempt has been ended by someone else."""
        entry = self._entry(mission)
        if entry is None:
            return False
        return mission.redrive_count < entry.generation or entry.final or mission.attempt <= entry.over

    async def follow(self, connection: AbstractRobustConnection, names: Topology) -> None:
        """Read the control stream from its start, then follow it until cancelled.

        ``caught_up`` is set once everything published before this call has been read:
        the worker publishes a marker into the stream and waits until it reads it back.
        """
        marker = uuid.uuid4().hex
        attached = asyncio.Event()

        async def mark() -> None:
            await attached.wait()
            await self._publish_marker(connection, names, marker)

        markings = {asyncio.create_task(mark())}

        def remark(*_: object) -> None:
            # After a reconnect, what happened during the outage is not known until read.
            nonlocal marker
            self.caught_up.clear()
            marker = uuid.uuid4().hex
            markings.add(asyncio.create_task(self._publish_marker(connection, names, marker)))

        connection.reconnect_callbacks.add(remark)
        try:
            stream = read_stream(connection, names.control_queue, "first", attached=attached)
            async with contextlib.aclosing(stream) as records:
                async for _, message in records:
                    if message.headers and _MARKER_HEADER in message.headers:
                        if message.headers[_MARKER_HEADER] == marker:
                            log.info("control stream read: %d missions known", len(self._missions))
                            self.caught_up.set()
                        continue
                    try:
                        events = codec.decode_record(message.body, message.headers, message.type)
                    except DecodeError as exc:
                        log.warning("skipping undecodable control record: %s", exc)
                        continue
                    for event in events:
                        self.observe(event)
        finally:
            connection.reconnect_callbacks.discard(remark)
            for marking in markings:
                marking.cancel()

    @staticmethod
    async def _publish_marker(connection: AbstractConnection, names: Topology, marker: str) -> None:
        """Publish a marker into the control stream, retrying until the broker confirms it."""
        while True:
            try:
                with broker_call("control stream marker not published"):
                    channel = await connection.channel(publisher_confirms=True)
                    async with channel:
                        await channel.default_exchange.publish(
                            aio_pika.Message(b"", headers={_MARKER_HEADER: marker}), routing_key=names.control_queue
                        )
                return
            except BrokerUnavailableError as exc:
                log.debug("%s; retrying", exc)
                await asyncio.sleep(0.5)
