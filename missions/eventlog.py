"""Publishing events (confirmed, grouped into shared records under load) and reading them back from the log."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import aiormq
from aio_pika import Message
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aio_pika.robust_channel import RobustChannel
from aio_pika.robust_queue import RobustQueue
from pamqp.common import FieldTable

from missions import codec, topology, tracing
from missions.amqp import (
    LogRetention,
    broker_call,
    close_channel,
    declare_backoff_queue,
    declare_topology,
    declare_work_queue,
)
from missions.errors import BrokerUnavailableError, DecodeError, LogTruncatedError
from missions.events import SCHEDULE_EVENT_TYPES
from missions.group_commit import GroupCommit
from missions.topology import Topology
from missions.v1 import events_pb2

__all__ = ["EventPublisher", "ReadTally", "read_log", "read_stream", "readable_events"]

log = logging.getLogger(__name__)

_TIMEOUT_S = 10.0  # for a confirm
# The service publishes these to the log only: no worker needs them on the control stream.
_NOT_DECISIONS = frozenset({events_pb2.EVENT_TYPE_CREATED, events_pb2.EVENT_TYPE_DUE, *SCHEDULE_EVENT_TYPES})
# How long a stream reader with unacked records waits for more before acking them.
_IDLE_CREDIT_S = 1.0


# Events that reach a classic queue, where each message is one mission's: the delay
# queues (RETRYING, back to work) and the dead-letter queue. They never share a record.
_ALONE = frozenset({events_pb2.EVENT_TYPE_RETRYING, events_pb2.EVENT_TYPE_DEAD_LETTERED})


class EventPublisher:
    """Publishes MissionEvents to the namespace's exchange with publisher confirms.

    ``publish`` returns only once the broker has routed the record holding the event to
    every bound queue and persisted it; otherwise it raises BrokerUnavailableError.
    Events published concurrently share records (group_commit), except those in _ALONE
    and, with tracing on, every event: a record has room for one event's trace headers.
    """

    def __init__(
        self,
        channel: AbstractChannel,
        exchange: AbstractExchange,
        dispatch: AbstractExchange,
        names: Topology,
        decisions: AbstractExchange | None = None,
    ) -> None:
        """``decisions``: the exchange of the service's decisions, for a publisher whose events
        (but CREATED) every worker must know (the service's); None for a worker's."""
        self._channel = channel
        self._exchange = exchange
        self._dispatch = dispatch
        self._decisions = decisions
        self._names = names
        self._declared: set[str] = set()  # work queues this publisher declared
        self.confirms = 0  # publishes the broker confirmed: a sign of life under load
        # One group commit per exchange: a record goes to one exchange.
        self._grouped = {
            exchange: GroupCommit(functools.partial(self._record_to, exchange))
            for exchange in (exchange, decisions)
            if exchange is not None
        }

    @classmethod
    async def open(
        cls, connection: AbstractConnection, names: Topology, retention: LogRetention, *, decides: bool = False
    ) -> EventPublisher:
        """A publisher on a channel of its own, the topology declared; ``decides``: its events
        (but CREATED) are the service's decisions, which reach the control stream too."""
        # Returned messages raise: a work message no queue takes is one whose type has none yet.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await declare_topology(channel, names, retention)
        dispatch = await channel.get_exchange(names.dispatch_exchange, ensure=False)
        decisions = await channel.get_exchange(names.decisions_exchange, ensure=False) if decides else None
        return cls(channel, exchange, dispatch, names, decisions)

    async def publish(self, event: events_pb2.MissionEvent, *, priority: int | None = None) -> None:
        """Append ``event`` to the log (and the queues its routing key is bound to)."""
        exchange = self._exchange_of(event)
        routing_key = topology.event_routing_key(event)
        if event.type not in _ALONE and not tracing.propagating:
            await self._grouped[exchange].publish(event, routing_key)
            return
        if event.type == events_pb2.EVENT_TYPE_RETRYING:
            delay_ms = topology.retry_delay_ms(event)
            if delay_ms:
                with broker_call("cannot declare the retry queue"):
                    await declare_backoff_queue(self._channel, self._exchange, self._names, delay_ms)
        await self._confirmed(exchange, codec.encode(event, priority), routing_key, _TIMEOUT_S)

    def _exchange_of(self, event: events_pb2.MissionEvent) -> AbstractExchange:
        """ns.decisions for the service's decisions, which every worker reads; ns.events otherwise.
        CREATED and DUE are not decisions a worker acts on: it learns of them from the work message;
        nor are a schedule's events (its missions are submitted like any other)."""
        if self._decisions is not None and event.type not in _NOT_DECISIONS:
            return self._decisions
        return self._exchange

    async def _record_to(self, exchange: AbstractExchange, record: Message, routing_key: str) -> None:
        await self._confirmed(exchange, record, routing_key, _TIMEOUT_S)

    async def dispatch(
        self, event: events_pb2.MissionEvent, *, priority: int | None = None, timeout: float = _TIMEOUT_S
    ) -> None:
        """Put the work message of ``event`` (CREATED or REDRIVEN) on its type's work queue.

        Only once ``publish`` has confirmed the event: a worker's STARTED must not reach the
        log before the event that queued its work. A single publish routed to both the work
        queue and the log does not keep that order: RabbitMQ may deliver it from the work
        queue before the stream has stored it (rare, under load: bench/causal_order.py).
        """
        await self.route(codec.encode(event, priority), event.mission_type, timeout)

    async def route(self, work: Message, mission_type: str, timeout: float = _TIMEOUT_S) -> None:
        """Publish a work message (its headers name ``mission_type``) through the dispatch exchange.

        A type whose queue no worker has declared yet gets it here, so its missions wait in it
        (QUEUED) until a worker that handles the type comes.
        """
        with broker_call("broker did not confirm the work message"):
            try:
                await self._dispatch.publish(work, routing_key="", mandatory=True, timeout=timeout)
                self.confirms += 1
                return
            except aiormq.exceptions.PublishError:
                if mission_type not in self._declared:  # once: concurrent dispatches all come back
                    self._declared.add(mission_type)
                    log.info("no work queue for mission type %r yet: declaring it", mission_type)
            await declare_work_queue(self._channel, self._names, mission_type)
            await self._dispatch.publish(work, routing_key="", mandatory=True, timeout=timeout)
            self.confirms += 1

    async def dead_letter(self, copy: Message, timeout: float = _TIMEOUT_S) -> None:
        """Put ``copy`` of a message that cannot run on the dead-letter queue."""
        await self._confirmed(self._channel.default_exchange, copy, self._names.dead_letter_queue, timeout)

    async def _confirmed(self, exchange: AbstractExchange, message: Message, routing_key: str, timeout: float) -> None:
        with broker_call("broker did not confirm the event"):
            await exchange.publish(message, routing_key=routing_key, mandatory=False, timeout=timeout)
        self.confirms += 1

    async def __aenter__(self) -> EventPublisher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        for grouped in self._grouped.values():
            await grouped.close()
        await self._channel.close()


async def read_stream(
    connection: AbstractConnection,
    queue_name: str,
    offset: int | str,
    *,
    prefetch: int = 1000,
    attached: asyncio.Event | None = None,
    strict: bool = False,
) -> AsyncGenerator[tuple[int, AbstractIncomingMessage], None]:
    """Yield ``(offset, message)`` from a stream queue, starting at ``offset``, then follow it.

    ``offset`` is a number or a RabbitMQ offset spec ("first", "last", "next"). After a
    reconnect the reader consumes again from the next offset it has not yielded.
    Deliveries the stream repeats (it starts at a chunk boundary) are skipped, so offsets
    strictly increase. ``attached`` is set once the consumer is registered. With
    ``strict``, a numeric ``offset`` older than the stream's retention raises
    LogTruncatedError instead of starting at the oldest retained message. Raises
    BrokerUnavailableError if the stream cannot be opened. Close the generator
    (``contextlib.aclosing``) to stop.
    """
    # Our own consumer rather than aio-pika's QueueIterator: closing that nacks the
    # messages it buffered, and a nack on a stream makes RabbitMQ close the whole
    # connection (540 NOT_IMPLEMENTED). Closing the channel simply drops them.
    inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    next_offset = offset if isinstance(offset, int) else 0
    with broker_call(f"cannot open {queue_name}"):
        channel = await connection.channel()
    try:
        with broker_call(f"cannot read {queue_name}"):
            await channel.set_qos(prefetch_count=prefetch)
            queue = await channel.get_queue(queue_name)
            await _consume(queue, inbox, offset)

        async def resume(*_: object) -> None:
            try:
                with broker_call(f"cannot resume {queue_name} at offset {next_offset}"):
                    await _consume(queue, inbox, next_offset)
            except BrokerUnavailableError as exc:  # the connection broke again; its next reopen retries
                log.warning("%s", exc)

        if isinstance(channel, RobustChannel):
            channel.reopen_callbacks.add(resume)
        if attached is not None:
            attached.set()
        credit = _Credit(prefetch)
        while True:
            message = await credit.received(inbox)
            position = codec.stream_offset(message.headers)
            if position < next_offset:
                continue
            if strict and position > next_offset == offset:
                raise LogTruncatedError(codec.sequence_at(position))
            next_offset = position + 1
            yield position, message
    finally:
        await close_channel(channel)


class _Credit:
    """Hands out a stream's deliveries and returns the broker's credit for them.

    Stream acks only return credit: one (multiple) per quarter of the prefetch costs far
    fewer frames than one per record (at live rates the inbox empties after nearly every
    record, so acking when it runs empty would not), and the reader never starves: fewer
    than a quarter unacked leaves the broker the rest of the credit to send more. A quiet
    stream's last records are acked after a moment: RabbitMQ closes a channel whose
    oldest delivery stays unacked past its consumer_timeout (30 min).
    """

    def __init__(self, prefetch: int) -> None:
        self._every = max(1, prefetch // 4)
        self._unacked: AbstractIncomingMessage | None = None
        self._count = 0

    async def received(self, inbox: asyncio.Queue[AbstractIncomingMessage]) -> AbstractIncomingMessage:
        """The next delivery of ``inbox``."""
        while (message := await self._next(inbox)) is None:  # quiet: the last record's ack covers the rest
            await self._returned()
        self._count += 1
        self._unacked = message
        if self._count >= self._every:
            await self._returned()
        return message

    async def _next(self, inbox: asyncio.Queue[AbstractIncomingMessage]) -> AbstractIncomingMessage | None:
        """The next delivery; None if records are unacked and none arrives within _IDLE_CREDIT_S."""
        if self._unacked is None or not inbox.empty():
            return await inbox.get()
        try:
            async with asyncio.timeout(_IDLE_CREDIT_S):  # a timer, not a task per record
                return await inbox.get()
        except TimeoutError:
            return None

    async def _returned(self) -> None:
        assert self._unacked is not None
        await _return_credit(self._unacked)
        self._unacked, self._count = None, 0


async def _return_credit(last: AbstractIncomingMessage) -> None:
    # One that fails in a broken connection (aiormq may raise a bare Exception then)
    # must not end the reader.
    with contextlib.suppress(Exception):
        await last.ack(multiple=True)


async def _consume(queue: AbstractQueue, inbox: asyncio.Queue[AbstractIncomingMessage], offset: int | str) -> None:
    arguments: FieldTable = {"x-stream-offset": offset}
    if isinstance(queue, RobustQueue):
        # Not a robust consumer: aio-pika would restore it from the first offset after a
        # reconnect, re-reading everything the reader has already passed.
        await queue.consume(inbox.put, arguments=arguments, robust=False)
    else:
        await queue.consume(inbox.put, arguments=arguments)


@dataclass(slots=True)
class ReadTally:
    """What a reader of a stream has read: records, the events in them, and the records
    that did not decode (skipped)."""

    records: int = 0
    events: int = 0
    skipped: int = 0


def readable_events(
    offset: int, message: AbstractIncomingMessage, stream: str, tally: ReadTally | None = None
) -> list[events_pb2.MissionEvent] | None:
    """The events of the record at stream ``offset``, each with its sequence
    (codec.sequence_at); None for a record that does not decode: logged and counted as
    skipped, so a bad record neither stops a reader nor is retried forever."""
    if tally is not None:
        tally.records += 1
    try:
        events = codec.decode_record(message.body, message.headers, message.type)
    except DecodeError as exc:
        if tally is not None:
            tally.skipped += 1
        log.warning("skipping undecodable record of %s at offset %d: %s", stream, offset, exc)
        return None
    for index, event in enumerate(events):
        event.sequence = codec.sequence_at(offset, index)
    if tally is not None:
        tally.events += len(events)
    return events


async def read_log(
    connection: AbstractConnection,
    names: Topology,
    after_sequence: int,
    *,
    prefetch: int = 1000,
    attached: asyncio.Event | None = None,
    tally: ReadTally | None = None,
    gaps: bool = False,
) -> AsyncGenerator[events_pb2.MissionEvent, None]:
    """Yield the log's events with sequence > ``after_sequence``, in order, then follow it.

    Sequences come from each record's stream offset and the event's place in it
    (codec.sequence_at), without duplicates (see read_stream). A record that does not
    decode is skipped (readable_events); with ``gaps`` it yields a gap instead: an event
    with only the record's first sequence, for readers whose position must move past it.
    ``tally`` counts what was read. A position older than the log's retention (other than
    0, "from the oldest") raises LogTruncatedError.
    """
    stream = read_stream(
        connection,
        names.log_queue,
        codec.offset_after(after_sequence),
        prefetch=prefetch,
        attached=attached,
        strict=after_sequence > 0,
    )
    async with contextlib.aclosing(stream) as records:
        async for offset, message in records:
            events = readable_events(offset, message, names.log_queue, tally)
            if events is None:
                events = [events_pb2.MissionEvent(sequence=codec.sequence_at(offset))] if gaps else []
            for event in events:
                if event.sequence > after_sequence:
                    yield event
