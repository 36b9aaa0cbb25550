"""Moves work out of the one work queue of earlier versions (``ns.work``) into the queues by type.

Before work was routed by mission type, every type's work waited in ``ns.work``. After an
upgrade it may still hold queued missions, and the delay queues of earlier versions
(``ns.retry.<ms>``, gone 10 minutes after their last use) still dead-letter retries into
it. Every service replica unbinds it from the events exchange and, for as long as it
runs, moves whatever arrives in it to the dispatch exchange: each message is acked only
once its copy is confirmed, so nothing is lost if the replica dies halfway (a copy may
then go out twice; the service refuses the second's STARTED, as any copy's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from missions import codec, topology
from missions.amqp import broker_call, close_channel
from missions.errors import BrokerUnavailableError, DecodeError
from missions.eventlog import EventPublisher
from missions.topology import Topology

__all__ = ["drain_legacy_work"]

log = logging.getLogger(__name__)

# Messages moved at once: each waits for its copy's confirm before its ack.
_PREFETCH = 64
# How long a message that could not be moved is kept before it is handed back to the queue.
_RETRY_PAUSE_S = 1.0


async def drain_legacy_work(connection: AbstractConnection, publisher: EventPublisher, names: Topology) -> None:
    """Move the legacy work queue's messages by type until cancelled; returns at once if it
    does not exist, and with an error logged if the broker refuses to let it be drained
    (that queue is no reason to stop serving)."""
    try:
        await _drain(connection, publisher, names)
    except Exception as exc:
        log.error("cannot move work out of %s: %r", names.legacy_work_queue, exc)


async def _drain(connection: AbstractConnection, publisher: EventPublisher, names: Topology) -> None:
    channel = await connection.channel()
    try:
        try:
            queue = await channel.declare_queue(names.legacy_work_queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return  # a namespace created by this version: nothing to move
        for binding in topology.LEGACY_WORK_BINDINGS:
            await queue.unbind(names.events_exchange, binding)
        log.info(
            "moving work from %s (%d messages) to the queues by mission type",
            names.legacy_work_queue,
            queue.declaration_result.message_count or 0,
        )
        await channel.set_qos(prefetch_count=_PREFETCH)

        async def move(message: AbstractIncomingMessage) -> None:
            await _move(message, publisher, names)

        await queue.consume(move)
        await asyncio.Future()  # until cancelled
    finally:
        await close_channel(channel)


async def _move(message: AbstractIncomingMessage, publisher: EventPublisher, names: Topology) -> None:
    mission_type = _mission_type(message)
    try:
        if mission_type:
            await publisher.route(codec.persistent_copy(message), mission_type)
        else:
            log.warning(
                "work message %s in %s names no mission type: dead-lettered",
                message.message_id,
                names.legacy_work_queue,
            )
            copy = codec.dead_letter_copy(message, "legacy work message without a mission type", "mission-service")
            await publisher.dead_letter(copy)
    except BrokerUnavailableError as exc:
        log.warning("work message %s not moved (%s); it stays in %s", message.message_id, exc, names.legacy_work_queue)
        await asyncio.sleep(_RETRY_PAUSE_S)  # handed straight back otherwise
        with contextlib.suppress(BrokerUnavailableError), broker_call("nack"):
            await message.nack(requeue=True)
        return
    with contextlib.suppress(BrokerUnavailableError), broker_call("ack"):
        await message.ack()


def _mission_type(message: AbstractIncomingMessage) -> str:
    claimed = codec.identity(message.headers)
    if claimed is not None and claimed.mission_type:
        return claimed.mission_type
    try:
        return codec.decode(message.body, message.headers, message.type).mission_type
    except DecodeError:
        return ""
