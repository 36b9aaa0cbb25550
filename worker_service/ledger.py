"""What a worker knows about missions beyond their work messages: the service's decisions.

The control stream (``ns.control``) carries the events the service decides that every
worker must know: CANCELLED (the mission is over: drop its queued work, stop it where it
runs), REDRIVEN (a new generation starts), and the reaper's FAILED, RETRYING and
DEAD_LETTERED of an attempt it declared lost (that attempt is over). The worker adds
what it publishes itself (its attempts' RETRYING, COMPLETED and DEAD_LETTERED). A work
message is *taken* when its attempt is over, when its mission ended, or when a newer
generation exists; the consumer drops such a message without starting it. That is how
a cancelled queued mission never starts. An attempt's outcome is published only while
the attempt is not *over*.

Which worker runs an attempt that copies of one work message offered to two workers at
once is not the ledger's to say: the log says it, through the service
(worker_service/verdicts.py).

Memory is bounded: the ledger keeps the ``remember_finished`` missions it heard of most
recently (as Celery bounds its revoked-task set), and every mission an attempt of
which runs here. A work message of a mission forgotten is no longer recognised as stale
here (the service still refuses to let it run).
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

from missions.amqp import broker_call
from missions.errors import BrokerUnavailableError
from missions.eventlog import read_stream, readable_events
from missions.events import is_schedule_event
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
    over: int = 0  # highest attempt known to be over
    final: bool = False
    running: int = 0  # attempts of it running here: it is not forgotten meanwhile


class MissionLedger:
    """Per mission: its generation, the attempts over, and whether it ended."""

    def __init__(self, remember_finished: int = DEFAULT_REMEMBER_FINISHED) -> None:
        self._missions: OrderedDict[str, _Entry] = OrderedDict()  # the latest heard of last
        self._remember_finished = remember_finished
        self._cancel_listeners: list[CancelListener] = []
        self.caught_up = asyncio.Event()

    def __len__(self) -> int:
        return len(self._missions)

    def on_cancel(self, listener: CancelListener) -> None:
        self._cancel_listeners.append(listener)

    def observe(self, event: events_pb2.MissionEvent) -> None:
        if is_schedule_event(event):
            return  # never on the control stream; a schedule's missions come as work like any other
        entry = self._heard_of(event.mission_id)
        if entry is None or event.generation > entry.generation:
            entry = self._new_entry(event.mission_id, event.generation)
        elif event.generation < entry.generation:
            return  # a late event of a generation that has been redriven since
        kind = event.WhichOneof("details")
        if kind == "retrying":
            entry.over = max(entry.over, event.attempt)
        elif kind in ("completed", "dead_lettered", "cancelled"):
            entry.final = True
            if kind == "cancelled":
                for listener in self._cancel_listeners:
                    listener(event)

    def enter(self, mission: mission_pb2.Mission) -> None:
        """Note that an attempt of ``mission`` runs here until ``leave``, and that its
        generation exists (its REDRIVEN may not have been read yet)."""
        entry = self._heard_of(mission.id)
        if entry is None or mission.redrive_count > entry.generation:
            entry = self._new_entry(mission.id, mission.redrive_count, running=1)
        else:
            entry.running += 1

    def leave(self, mission: mission_pb2.Mission) -> None:
        """Note that an attempt of ``mission`` that ``enter`` noted no longer runs here."""
        entry = self._missions.get(mission.id)
        if entry is not None and entry.running:
            entry.running -= 1

    def _heard_of(self, mission_id: str) -> _Entry | None:
        """The mission's entry, now the latest heard of; None if it has none."""
        entry = self._missions.get(mission_id)
        if entry is not None:
            self._missions.move_to_end(mission_id)
        return entry

    def _new_entry(self, mission_id: str, generation: int, running: int = 0) -> _Entry:
        entry = self._missions[mission_id] = _Entry(generation, running=running)
        self._missions.move_to_end(mission_id)
        # Forget the least recently heard of, but none that runs here (at most --concurrency).
        for _ in range(len(self._missions)):
            if len(self._missions) <= self._remember_finished:
                break
            oldest, candidate = next(iter(self._missions.items()))
            if candidate.running:
                self._missions.move_to_end(oldest)
            else:
                del self._missions[oldest]
        return entry

    def _entry(self, mission: mission_pb2.Mission) -> _Entry | None:
        """The ledger entry for ``mission``'s generation; None when it is newer than known."""
        entry = self._missions.get(mission.id)
        if entry is None or mission.redrive_count > entry.generation:
            return None
        return entry

    def is_taken(self, mission: mission_pb2.Mission) -> bool:
        """True when the work message for ``mission`` (at its attempt) must not run: the
        attempt is over, the mission ended, or a newer generation exists."""
        entry = self._entry(mission)
        if entry is None:
            return False
        return mission.redrive_count < entry.generation or entry.final or mission.attempt <= entry.over

    def is_over(self, mission: mission_pb2.Mission) -> bool:
        """True when ``mission``'s current attempt has been ended by someone else."""
        return self.is_taken(mission)

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
                async for offset, message in records:
                    if message.headers and _MARKER_HEADER in message.headers:
                        if message.headers[_MARKER_HEADER] == marker:
                            log.info("control stream read: %d missions known", len(self._missions))
                            self.caught_up.set()
                        continue
                    for event in readable_events(offset, message, names.control_queue) or ():
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
