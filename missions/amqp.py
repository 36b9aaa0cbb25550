"""Broker connection and idempotent topology declaration (see missions.topology)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from pamqp.common import FieldTable
from yarl import URL

from missions import topology
from missions.brokers import FailoverConnection, broker_urls, redact_url
from missions.errors import BrokerUnavailableError
from missions.tls import TlsFiles
from missions.topology import Topology

__all__ = [
    "BROKER_ERRORS",
    "LogRetention",
    "RetentionMismatchError",
    "broker_call",
    "close_channel",
    "connect",
    "declare_backoff_queue",
    "declare_topology",
    "declare_work_queue",
    "delete_topology",
    "message_counts",
]

log = logging.getLogger(__name__)

# What a broker call raises when the broker did not do it: the link broke, the channel
# closed, the confirm never came.
BROKER_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, asyncio.TimeoutError, RuntimeError)


@contextlib.contextmanager
def broker_call(what: str) -> Iterator[None]:
    """Turn what a failed broker call raises into BrokerUnavailableError("``what``: ...").

    That includes a CancelledError while this task is not being cancelled: aiormq rejects
    the futures pending on a channel it closes with one (its close() default), and let
    through it would end the task calling the broker as if it had been cancelled; and the
    bare Exception it rejects them with when a connection closes without a reason.
    """
    try:
        yield
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        raise BrokerUnavailableError(f"{what}: the channel closed under the call") from None
    except BROKER_ERRORS as exc:
        raise BrokerUnavailableError(f"{what}: {exc!r}") from exc
    except Exception as exc:
        if type(exc) is not Exception:
            raise
        # What aiormq rejects the pending calls of a channel or connection with when it
        # closes without a reason (seen when the connection is cut under an ack or a
        # queue declaration): the broker is gone, not a bug of ours.
        raise BrokerUnavailableError(f"{what}: the connection closed under the call") from exc


# A retry queue lives this long past the last message routed to it (each publish
# re-declares it, which restarts the clock), so it never expires holding a message.
_RETRY_QUEUE_GRACE_MS = 10 * 60 * 1000


@dataclass(frozen=True, slots=True)
class LogRetention:
    """How long the event log (and the control stream) keep events: whichever limit is hit first.

    Attributes:
        max_age: RabbitMQ duration string, default "7D" (units Y, M, D, h, m, s).
        max_bytes: total size cap, default 10 GiB.
        segment_bytes: segment file size; retention drops whole segments, default 64 MiB.
    """

    max_age: str = "7D"
    max_bytes: int = 10 * 1024**3
    segment_bytes: int = 64 * 1024**2

    def arguments(self) -> FieldTable:
        """Declaration arguments of a stream queue with this retention."""
        return {
            "x-queue-type": "stream",
            "x-max-age": self.max_age,
            "x-max-length-bytes": self.max_bytes,
            "x-stream-max-segment-size-bytes": self.segment_bytes,
        }


class RetentionMismatchError(RuntimeError):
    """A stream exists with other retention arguments than this process declares."""


async def connect(url: str, name: str, tls: TlsFiles | None = None) -> AbstractRobustConnection:
    """A robust connection that fails fast if no broker is reachable at start-up.

    ``url`` may list the nodes of one cluster separated by commas: each is tried in turn
    at start-up, and the connection moves on to the next when it loses one
    (missions/brokers.py). An ``amqps://`` URL connects over TLS: with ``tls``, the broker
    is verified with its CA (else the system's) and presents its client certificate;
    without, aiormq builds the context from the URL's own query (``cafile``, ``certfile``,
    ``keyfile``).
    """
    urls = broker_urls(url)
    if tls is not None and tls.configured and any(urlsplit(one).scheme != "amqps" for one in urls):
        raise ValueError(f"{'/'.join(tls.flags)} need an amqps:// URL, got {redact_url(url)}")
    context = tls.client_context() if tls is not None and tls.configured else None
    for position in range(len(urls) - 1):
        try:
            return await _connect_at(urls, position, name, context)
        except (*BROKER_ERRORS, OSError) as exc:
            log.warning("cannot connect to %s (%r): trying the next", redact_url(urls[position]), exc)
    return await _connect_at(urls, len(urls) - 1, name, context)


async def _connect_at(
    urls: Sequence[str], position: int, name: str, context: ssl.SSLContext | None
) -> AbstractRobustConnection:
    """A robust connection to ``urls[position]``; with several URLs, one that moves on to the next."""
    connection = await aio_pika.connect_robust(
        urls[position],
        client_properties={"connection_name": name},
        ssl_context=context,
        connection_class=FailoverConnection if len(urls) > 1 else aio_pika.RobustConnection,
    )
    if isinstance(connection, FailoverConnection):
        connection.urls = [URL(one) for one in (*urls[position:], *urls[:position])]
    log.info("connected to %s as %s", redact_url(urls[position]), name)
    return connection


async def declare_exchange(channel: AbstractChannel, names: Topology) -> AbstractExchange:
    return await channel.declare_exchange(names.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare_topology(
    channel: AbstractChannel, names: Topology, retention: LogRetention = LogRetention()
) -> AbstractExchange:
    """Declare the exchanges, the log, control and dead-letter queues and their bindings
    (each type's work queue is declared by its workers, and by the service on first use).

    Safe to run by every process at every start and after every reconnect.
    """
    exchange = await declare_exchange(channel, names)
    log_queue = await _declare_stream(channel, names.log_queue, retention)
    await log_queue.bind(exchange, "#")
    # The service's decisions reach the log through ns.events like every event, and the
    # control stream besides, in one publish.
    decisions = await channel.declare_exchange(names.decisions_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
    await exchange.bind(decisions)
    control = await _declare_stream(channel, names.control_queue, retention)
    await control.bind(decisions)
    for binding in topology.LEGACY_CONTROL_BINDINGS:
        await control.unbind(exchange, binding)
    dispatch = await channel.declare_exchange(names.dispatch_exchange, aio_pika.ExchangeType.HEADERS, durable=True)
    # A retry with no delay goes straight to its type's work queue.
    await dispatch.bind(exchange, topology.retry_binding(0))
    dead = await channel.declare_queue(names.dead_letter_queue, durable=True)
    await dead.unbind(exchange, topology.LEGACY_DEAD_LETTER_BINDING)
    await channel.declare_exchange(names.workers_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
    return exchange


async def declare_work_queue(channel: AbstractChannel, names: Topology, mission_type: str) -> AbstractQueue:
    """The work queue of one mission type, bound to the dispatch exchange by the type header."""
    queue = await channel.declare_queue(
        names.work_queue(mission_type), durable=True, arguments={"x-max-priority": topology.MAX_PRIORITY}
    )
    # "all-with-x": the header's name starts with "x-", which plain "all" would not compare.
    await queue.bind(
        names.dispatch_exchange, arguments={"x-match": "all-with-x", topology.MISSION_TYPE_HEADER: mission_type}
    )
    return queue


async def declare_heartbeat_queue(channel: AbstractChannel, names: Topology) -> AbstractQueue:
    """A private queue of every worker heartbeat from now on, for one service replica.

    Named by us, not by the server: a robust channel re-declares it after a reconnect, and
    a server-named ("amq.gen-...") queue cannot be re-declared by name.
    """
    exchange = await channel.get_exchange(names.workers_exchange)
    queue = await channel.declare_queue(
        f"{names.workers_exchange}.{uuid.uuid4().hex}", exclusive=True, auto_delete=True
    )
    await queue.bind(exchange)
    return queue


async def declare_leader_queue(channel: AbstractChannel, names: Topology, tick_ttl_ms: int) -> AbstractQueue:
    """The queue of the replicas' ticks: a single active consumer, so only one replica (the
    leader) receives them; a tick older than ``tick_ttl_ms`` is dropped unread."""
    return await channel.declare_queue(
        names.leader_queue,
        durable=False,
        arguments={"x-single-active-consumer": True, "x-message-ttl": tick_ttl_ms},
    )


async def delete_topology(connection: AbstractConnection, names: Topology, mission_types: Iterable[str] = ()) -> None:
    """Delete a namespace's queues and exchanges, with the work queues of ``mission_types``
    (its delay queues expire by themselves)."""
    for queue in (
        names.log_queue,
        names.legacy_work_queue,
        *(names.work_queue(mission_type) for mission_type in mission_types),
        names.dead_letter_queue,
        names.control_queue,
        names.leader_queue,
    ):
        # A failed delete closes its channel, so each gets a channel of its own.
        channel = await connection.channel()
        with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
            await channel.queue_delete(queue)
    channel = await connection.channel()
    for exchange in (names.decisions_exchange, names.events_exchange, names.dispatch_exchange, names.workers_exchange):
        with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
            await channel.exchange_delete(exchange)


async def _declare_stream(channel: AbstractChannel, name: str, retention: LogRetention) -> AbstractQueue:
    try:
        return await channel.declare_queue(name, durable=True, arguments=retention.arguments())
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        # A queue's arguments are fixed when it is created; say what to do instead of 406.
        raise RetentionMismatchError(
            f"stream {name} exists with another retention than --log-max-age={retention.max_age}"
            f" --log-max-bytes={retention.max_bytes}: give every process of the namespace the retention it was"
            " created with, and change retention with a RabbitMQ policy (docs/operations.md)"
        ) from exc


async def declare_backoff_queue(
    channel: AbstractChannel, exchange: AbstractExchange, names: Topology, delay_ms: int
) -> AbstractQueue:
    """The delay queue for one backoff delay: messages expire into their type's work queue."""
    queue = await channel.declare_queue(
        names.backoff_queue(delay_ms),
        durable=True,
        arguments={
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": names.dispatch_exchange,
            "x-expires": delay_ms + _RETRY_QUEUE_GRACE_MS,
        },
    )
    await queue.bind(exchange, topology.retry_binding(delay_ms))
    return queue


async def message_counts(connection: AbstractConnection, queue_names: Sequence[str]) -> list[int]:
    """Messages ready in each queue (0 for a queue that does not exist); BrokerUnavailableError
    when the broker cannot say."""
    counts = []
    for name in queue_names:
        with broker_call("cannot read the queue depths"):
            # A passive declare of a missing queue closes its channel, so each gets its own.
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                counts.append(queue.declaration_result.message_count or 0)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                counts.append(0)
            finally:
                await close_channel(channel)
    return counts


async def close_channel(channel: AbstractChannel) -> None:
    """Close ``channel`` completely, even when the caller is being cancelled.

    An interrupted close lets the client reuse the channel number before the broker has
    released it, and RabbitMQ then closes the whole connection (504 CHANNEL_ERROR
    "expected 'channel.open'"), taking every other channel on it down too.
    """
    if channel.is_closed:
        return
    closing = asyncio.ensure_future(channel.close())
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        await asyncio.wait({closing})
        raise
