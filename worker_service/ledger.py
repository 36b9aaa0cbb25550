"""What a worker knows about missions beyond their work messages, from the control stream.

The control stream (``ns.control``) carries the events that move a mission past a work
message: RETRYING (attempt n is over), COMPLETED, DEAD_LETTERED, CANCELLED (the mission is
over) and REDRIVEN (a new generation starts). A work message is *stale* when the ledger
has seen its attempt end, or its mission end, or a newer generation; the consumer then
drops it without running it. That is how a cancelled queued mission never starts, and how
a redelivered message that was already handled (a lost ack) does not run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import uuid
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractConnection

from missions import codec
from missions.errors import DecodeError
from missions.eventlog import read_stream
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2

__all__ = ["MissionLedger"]

log = logging.getLogger(__name__)

E = events_pb2
_FINAL = sys.maxsize
_MARKER_HEADER = "x-missions-marker"

CancelListener = Callable[[events_pb2.MissionEvent], None]


class MissionLedger:
    """Per mission: (generation, attempts known to be over), or final."""

    def __init__(self) -> None:
        self._missions: dict[str, tuple[int, int]] = {}
        self._cancel_listeners: list[CancelListener] = []
        self.caught_up = asyncio.Event()

    def __len__(self) -> int:
        return len(self._missions)

    def on_cancel(self, listener: CancelListener) -> None:
        self._cancel_listeners.append(listener)

    def observe(self, event: events_pb2.MissionEvent) -> None:
        generation, done = self._missions.get(event.mission_id, (0, 0))
        kind = event.WhichOneof("details")
        if kind == "retrying":
            incoming = event.retrying.mission.redrive_count
            if incoming > generation:
                self._missions[event.mission_id] = (incoming, event.attempt)
            elif incoming == generation:
                self._missions[event.mission_id] = (generation, max(done, event.attempt))
        elif kind == "redriven":
            incoming = event.redriven.mission.redrive_count
            if incoming > generation:
                self._missions[event.mission_id] = (incoming, 0)
        elif kind in ("completed", "dead_lettered", "cancelled"):
            self._missions[event.mission_id] = (generation, _FINAL)
            if kind == "cancelled":
                for listener in self._cancel_listeners:
                    listener(event)

    def is_stale(self, mission: mission_pb2.Mission) -> bool:
        """True when ``mission`` (at its ``attempt`` and ``redrive_count``) must not run."""
        generation, done = self._missions.get(mission.id, (0, 0))
        return mission.redrive_count < generation or (mission.redrive_count == generation and done >= mission.attempt)

    async def follow(self, connection: AbstractConnection, names: Topology) -> None:
        """Read the control stream from its start, then follow it until cancelled.

        ``caught_up`` is set once everything published before this call has been read:
        the worker publishes a marker into the stream and waits until it reads it back.
        """
        marker = uuid.uuid4().hex
        attached = asyncio.Event()

        async def mark() -> None:
            await attached.wait()
            await self._publish_marker(connection, names, marker)

        marking = asyncio.create_task(mark())
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
                        self.observe(codec.decode(message.body, message.headers, message.type))
                    except DecodeError as exc:
                        log.warning("skipping undecodable control record: %s", exc)
        finally:
            marking.cancel()

    @staticmethod
    async def _publish_marker(connection: AbstractConnection, names: Topology, marker: str) -> None:
        channel = await connection.channel(publisher_confirms=True)
        async with channel:
            await channel.default_exchange.publish(
                aio_pika.Message(b"", headers={_MARKER_HEADER: marker}), routing_key=names.control_queue
            )
