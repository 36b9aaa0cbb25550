"""Takes out of the dead-letter queue (``ns.dead``) the copies of DEAD_LETTERED events that
earlier versions routed there.

Those copies made the queue disagree with ListDeadLetters: a redriven mission's copy
stayed, and nothing consumed them. The log holds every DEAD_LETTERED and the projection
every dead letter, so the queue now holds only work messages that could not be read.
Each replica goes once through the messages the queue held when it started: it drops
event copies and puts every other message back at the tail (confirmed before its ack, so
nothing is lost if it dies halfway), which keeps their order.
"""

from __future__ import annotations

import logging

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from missions import codec
from missions.amqp import close_channel
from missions.errors import DecodeError
from missions.eventlog import EventPublisher
from missions.topology import Topology
from missions.v1 import events_pb2

__all__ = ["drop_dead_letter_events"]

log = logging.getLogger(__name__)


async def drop_dead_letter_events(connection: AbstractConnection, publisher: EventPublisher, names: Topology) -> int:
    """Drop the DEAD_LETTERED copies ``ns.dead`` holds; how many. An error is logged, not
    raised: that queue is no reason to stop serving."""
    try:
        return await _drop(connection, publisher, names)
    except Exception as exc:
        log.error("cannot take event copies out of %s: %r", names.dead_letter_queue, exc)
        return 0


async def _drop(connection: AbstractConnection, publisher: EventPublisher, names: Topology) -> int:
    channel = await connection.channel()
    try:
        try:
            queue = await channel.declare_queue(names.dead_letter_queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0
        dropped = 0
        for _ in range(queue.declaration_result.message_count or 0):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            if _is_dead_lettered_event(message):
                dropped += 1
            else:
                await publisher.dead_letter(codec.persistent_copy(message))
            await message.ack()
        if dropped:
            log.info("dropped %d copies of DEAD_LETTERED events from %s", dropped, names.dead_letter_queue)
        return dropped
    finally:
        await close_channel(channel)


def _is_dead_lettered_event(message: AbstractIncomingMessage) -> bool:
    if codec.DEAD_LETTER_REASON_HEADER in (message.headers or {}):
        return False  # a work message that could not run
    try:
        event = codec.decode(message.body, message.headers, message.type)
    except DecodeError:
        return False
    return event.type == events_pb2.EVENT_TYPE_DEAD_LETTERED
