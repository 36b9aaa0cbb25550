"""Integration: the topology, the event publisher and the log reader on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from mission_service.legacy_dead_letters import drop_dead_letter_events
from mission_service.legacy_work import drain_legacy_work
from missions import amqp, codec, eventlog, topology
from missions.amqp import LogRetention, delete_topology
from missions.errors import BrokerUnavailableError, LogTruncatedError
from missions.eventlog import EventPublisher, read_log
from missions.events import duration, new_event
from missions.health import HealthConditions
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2
from tests.proxy import TcpProxy
from tests.support import eventually, rabbitmqctl

pytestmark = pytest.mark.integration

E = events_pb2


def _mission(mission_type: str = "echo") -> mission_pb2.Mission:
    return mission_pb2.Mission(id=str(uuid.uuid4()), type=mission_type, max_attempts=3)


def _created(mission: mission_pb2.Mission) -> events_pb2.MissionEvent:
    event = new_event(mission, E.EVENT_TYPE_CREATED, source="test", correlation_id="c")
    event.created.mission.CopyFrom(mission)
    return event


async def _publish_created(publisher: EventPublisher, count: int) -> None:
    """``count`` CREATED events of fresh missions, each confirmed before the next (one record per chunk)."""
    for _ in range(count):
        await publisher.publish(_created(_mission()))


async def _take(events: AsyncIterator[events_pb2.MissionEvent], count: int) -> list[events_pb2.MissionEvent]:
    taken: list[events_pb2.MissionEvent] = []
    async with asyncio.timeout(20):
        async for event in events:
            taken.append(event)
            if len(taken) == count:
                break
    return taken


async def test_log_assigns_increasing_sequences_and_resumes_anywhere(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    published = [_created(_mission()) for _ in range(30)]
    for event in published:
        await publisher.publish(event)
    names = Topology(namespace)
    async with contextlib.aclosing(read_log(connection, names, 0)) as log:
        everything = await _take(log, 30)
    assert [event.id for event in everything] == [event.id for event in published]
    # Each confirmed before the next: one record each.
    assert [event.sequence for event in everything] == [codec.sequence_at(offset) for offset in range(30)]
    for taken in (1, 17, 29):
        position = everything[taken - 1].sequence
        async with contextlib.aclosing(read_log(connection, names, position)) as log:
            rest = await _take(log, 30 - taken)
        assert rest == everything[taken:]


async def test_closing_a_replay_keeps_the_connection_usable(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    """Regression: abandoning a stream consumer with buffered messages must not nack them."""
    await _publish_created(publisher, 50)
    names = Topology(namespace)
    for _ in range(3):
        async with contextlib.aclosing(read_log(connection, names, 0, prefetch=100)) as log:
            await _take(log, 1)
    async with contextlib.aclosing(read_log(connection, names, codec.sequence_at(48))) as log:
        (last,) = await _take(log, 1)
    assert last.sequence == codec.sequence_at(49)
    assert not connection.is_closed


async def test_a_reader_returning_credit_a_quarter_at_a_time_never_stalls_behind_or_at_the_tail(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    # One record per chunk (confirmed one at a time), credit back every 2 records: 51
    # behind leave one unacked, then 3 live ones, each alone, leave it with unacked
    # records and nothing more on the way.
    await _publish_created(publisher, 51)
    names = Topology(namespace)
    async with contextlib.aclosing(read_log(connection, names, 0, prefetch=8)) as log:
        behind = await _take(log, 51)
        live = []
        for _ in range(3):
            await publisher.publish(_created(_mission()))
            live += await _take(log, 1)
    assert [event.sequence for event in [*behind, *live]] == [codec.sequence_at(offset) for offset in range(54)]


async def _rows(*args: str) -> list[list[str]]:
    output = await rabbitmqctl("-q", *args, "--no-table-headers")
    return [line.split("\t") for line in output.splitlines()]


async def _unacked(connection_name: str) -> int:
    """Deliveries the broker counts unacknowledged on the channels of the named connection."""
    rows = await _rows("list_connections", "pid", "client_properties")
    pids = {pid for pid, properties in rows if f'{{"connection_name","{connection_name}"}}' in properties}
    assert len(pids) == 1, f"connection {connection_name!r} not found once: {pids}"
    channels = await _rows("list_channels", "connection", "messages_unacknowledged")
    return sum(int(unacked) for pid, unacked in channels if pid in pids)


@pytest.mark.timeout(60)
async def test_a_quiet_reader_acks_its_last_records_so_the_broker_never_times_them_out(
    publisher: EventPublisher, namespace: str, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eventlog, "_IDLE_CREDIT_S", 0.05)
    name = f"quiet reader {namespace}"
    reader = await amqp.connect(amqp_url, name)
    async with reader:
        await _publish_created(publisher, 3)
        # 3 records, far fewer than a quarter of the prefetch: only the idle ack returns them.
        log = read_log(reader, Topology(namespace), 0, prefetch=1000)
        await _take(log, 3)

        async def all_acked() -> bool:
            return await _unacked(name) == 0

        waiting = asyncio.ensure_future(anext(log))  # a reader waiting for more, as the follower is
        try:
            await eventually(all_acked, "the quiet reader's records acked", interval=0.2)
        finally:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting


async def test_undecodable_records_in_the_log_are_skipped(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    names = Topology(namespace)
    channel = await connection.channel()
    exchange = await channel.get_exchange(names.events_exchange)
    await exchange.publish(aio_pika.Message(b"\xff garbage"), routing_key="created.x")
    good = _created(_mission())
    await publisher.publish(good)
    async with contextlib.aclosing(read_log(connection, names, 0)) as log:
        (event,) = await _take(log, 1)
    assert event.id == good.id and event.sequence == codec.sequence_at(1)


async def _get(connection: AbstractRobustConnection, queue_name: str, timeout: float = 20) -> events_pb2.MissionEvent:
    """The next message of a queue, consumed (pushed by the broker, not polled)."""
    channel = await connection.channel()
    queue = await channel.get_queue(queue_name)
    async with queue.iterator() as messages:
        async with asyncio.timeout(timeout):
            async for message in messages:
                await message.ack()
                return codec.decode(message.body, message.headers, message.type)
    raise AssertionError("queue iterator ended")


def _dead_lettered(mission: mission_pb2.Mission) -> events_pb2.MissionEvent:
    dead = new_event(mission, E.EVENT_TYPE_DEAD_LETTERED, source="test", correlation_id="c")
    dead.dead_lettered.reason = "attempts exhausted"
    dead.dead_lettered.mission.CopyFrom(mission)
    return dead


async def test_created_reaches_its_type_s_work_queue_only_when_dispatched_and_dead_lettered_the_log_only(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    names = Topology(namespace)
    mission = _mission("echo")
    created = _created(mission)
    await publisher.publish(created, priority=mission_pb2.PRIORITY_NORMAL)
    # Confirmed means enqueued everywhere it was routed: the log only.
    assert await amqp.message_counts(connection, [names.work_queue("echo")]) == [0]
    # No worker declared the type's queue yet: the dispatch declares it, and nothing is lost.
    await publisher.dispatch(created, priority=mission_pb2.PRIORITY_NORMAL)
    assert (await _get(connection, names.work_queue("echo"))).id == created.id
    # A dead letter is a mission of the log (ListDeadLetters), not a message in ns.dead.
    await publisher.publish(_dead_lettered(mission))
    assert await amqp.message_counts(connection, [names.dead_letter_queue]) == [0]


async def test_the_dead_letter_queue_of_earlier_versions_keeps_only_unreadable_messages(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    names = Topology(namespace)
    channel = await connection.channel()
    # ns.dead as earlier versions bound it, holding two DEAD_LETTERED copies around an
    # unreadable work message.
    dead = await channel.get_queue(names.dead_letter_queue)
    await dead.bind(names.events_exchange, topology.LEGACY_DEAD_LETTER_BINDING)
    copies = [_dead_lettered(_mission()) for _ in range(2)]
    await publisher.publish(copies[0])
    unreadable = aio_pika.Message(b"\xff not an event", headers={codec.DEAD_LETTER_REASON_HEADER: "undecodable"})
    await channel.default_exchange.publish(unreadable, routing_key=names.dead_letter_queue)
    await publisher.publish(copies[1])
    assert await amqp.message_counts(connection, [names.dead_letter_queue]) == [3]

    await amqp.declare_topology(await connection.channel(), names)  # as every process does when it starts
    await publisher.publish(_dead_lettered(_mission()))
    assert await amqp.message_counts(connection, [names.dead_letter_queue]) == [3]
    assert await drop_dead_letter_events(connection, publisher, names) == 2
    kept = await dead.get(timeout=20)
    assert (kept.body, kept.headers[codec.DEAD_LETTER_REASON_HEADER]) == (b"\xff not an event", "undecodable")
    await kept.ack()
    assert await amqp.message_counts(connection, [names.dead_letter_queue]) == [0]


async def test_the_control_stream_holds_the_service_s_decisions_not_the_workers_events(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    names = Topology(namespace)
    channel = await connection.channel()
    control = await channel.get_queue(names.control_queue)
    await control.bind(names.events_exchange, "completed.#")  # as earlier versions bound it
    worker = await EventPublisher.open(connection, names, LogRetention())  # declaring removes it
    mission = _mission()
    completed = new_event(mission, E.EVENT_TYPE_COMPLETED, source="worker", correlation_id="c")
    completed.completed.SetInParent()
    await worker.publish(completed)
    created = _created(mission)
    await publisher.publish(created)
    cancelled = new_event(mission, E.EVENT_TYPE_CANCELLED, source="service", correlation_id="c")
    cancelled.cancelled.reason = "no longer wanted"
    await publisher.publish(cancelled)
    await worker.close()

    seen: list[str] = []
    records = eventlog.read_stream(connection, names.control_queue, "first")
    async with contextlib.aclosing(records) as stream, asyncio.timeout(30):
        async for _, message in stream:
            seen += [event.id for event in codec.decode_record(message.body, message.headers, message.type)]
            if cancelled.id in seen:
                break
    assert seen == [cancelled.id]
    async with contextlib.aclosing(read_log(connection, names, 0)) as events, asyncio.timeout(30):
        assert [event.id for event in await _take(events, 3)] == [completed.id, created.id, cancelled.id]


async def test_work_goes_to_the_queue_of_its_type_only(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    names = Topology(namespace)
    channel = await connection.channel()
    for mission_type in ("echo", "sleep"):
        await amqp.declare_work_queue(channel, names, mission_type)
    for mission_type in ("echo", "sleep", "sleep"):
        created = _created(_mission(mission_type))
        await publisher.publish(created)
        await publisher.dispatch(created)
    assert await amqp.message_counts(connection, [names.work_queue("echo"), names.work_queue("sleep")]) == [1, 2]


async def test_the_service_moves_the_work_of_earlier_versions_to_the_queues_by_type(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    names = Topology(namespace)
    channel = await connection.channel()
    # The one work queue of earlier versions, as they declared and bound it, holding a mission.
    legacy = await channel.declare_queue(
        names.legacy_work_queue, durable=True, arguments={"x-max-priority": topology.MAX_PRIORITY}
    )
    for binding in topology.LEGACY_WORK_BINDINGS:
        await legacy.bind(names.events_exchange, binding)
    queued = _created(_mission("resize"))
    await publisher.publish(queued, priority=mission_pb2.PRIORITY_HIGH)
    assert await amqp.message_counts(connection, [names.legacy_work_queue]) == [1]

    await amqp.declare_work_queue(channel, names, "resize")  # as its workers do
    draining = asyncio.create_task(drain_legacy_work(connection, publisher, names))
    try:
        moved = await _get(connection, names.work_queue("resize"))
        assert moved.id == queued.id
        # Unbound: what is published from now on reaches the legacy queue no more.
        await publisher.publish(_created(_mission("resize")))
        assert await amqp.message_counts(connection, [names.legacy_work_queue]) == [0]
        # A retry queue of an earlier version still dead-letters into it: moved as well.
        await channel.default_exchange.publish(codec.encode(queued, 2), routing_key=names.legacy_work_queue)
        assert (await _get(connection, names.work_queue("resize"))).id == queued.id
    finally:
        draining.cancel()
        await asyncio.gather(draining, return_exceptions=True)
        await delete_topology(connection, names, ["resize"])


async def test_retrying_event_comes_back_to_its_type_s_work_queue_after_its_delay(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    names = Topology(namespace)
    mission = _mission()
    await amqp.declare_work_queue(await connection.channel(), names, mission.type)
    loop = asyncio.get_running_loop()
    for delay in (timedelta(milliseconds=640), timedelta(milliseconds=0)):
        retry = new_event(mission, E.EVENT_TYPE_RETRYING, source="test", correlation_id="c")
        retry.retrying.delay.CopyFrom(duration(delay))
        retry.retrying.mission.CopyFrom(mission)
        published_at = loop.time()
        await publisher.publish(retry, priority=mission_pb2.PRIORITY_NORMAL)
        arrived = await _get(connection, names.work_queue(mission.type))
        waited = loop.time() - published_at
        assert arrived.id == retry.id
        # Not a timing threshold: the broker must not hand it back before the TTL ran out.
        assert waited >= delay.total_seconds()


async def test_a_position_older_than_the_retention_is_out_of_range(
    connection: AbstractRobustConnection, namespace: str
) -> None:
    names = Topology(namespace)
    tiny = LogRetention(max_bytes=4_000, segment_bytes=1_000)
    publisher = await EventPublisher.open(connection, names, tiny)
    try:
        await _publish_created(publisher, 100)
    finally:
        await publisher.close()
    async with contextlib.aclosing(read_log(connection, names, 0)) as log:
        (oldest,) = await _take(log, 1)
    assert oldest.sequence > codec.sequence_at(0), "retention should have dropped the first segments"
    with pytest.raises(LogTruncatedError) as caught:
        async with contextlib.aclosing(read_log(connection, names, 1)) as log:
            await _take(log, 1)
    # RabbitMQ truncates a stream in the background, so it may have dropped more since.
    first = caught.value.oldest_sequence
    assert first >= oldest.sequence
    for _ in range(10):
        try:
            async with contextlib.aclosing(read_log(connection, names, first - 1)) as log:
                (resumed,) = await _take(log, 1)
            break
        except LogTruncatedError as again:
            assert again.oldest_sequence > first
            first = again.oldest_sequence
    assert resumed.sequence == first


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    async with TcpProxy.for_url(amqp_url) as proxy:
        yield proxy


async def _reconnected(connection: AbstractRobustConnection) -> asyncio.Event:
    """An event set the next time ``connection`` has reconnected."""
    reconnected = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: reconnected.set())
    return reconnected


async def test_a_log_reader_resumes_after_a_reconnect_where_it_was(
    amqp_url: str, proxy: TcpProxy, publisher: EventPublisher, namespace: str
) -> None:
    """After a reconnect the reader consumes again from its position, not from its start."""
    names = Topology(namespace)
    published = [_created(_mission()) for _ in range(1000)]
    for event in published:
        event.created.mission.payload.update({"padding": "x" * 200})
        await publisher.publish(event)
    connection = await amqp.connect(proxy.url(amqp_url), "test resumes")
    async with connection, contextlib.aclosing(read_log(connection, names, 0)) as log:
        first = await _take(log, 1000)
        assert [event.sequence for event in first] == [codec.sequence_at(offset) for offset in range(1000)]
        read_once = proxy.downstream_bytes
        reconnected = await _reconnected(connection)
        proxy.sever()
        proxy.restore()
        async with asyncio.timeout(30):
            await reconnected.wait()
        later = _created(_mission())
        await publisher.publish(later)
        (resumed,) = await _take(log, 1)
    assert (resumed.id, resumed.sequence) == (later.id, codec.sequence_at(1000))
    # Re-reading from the start would move the first thousand events again.
    assert proxy.downstream_bytes - read_once < read_once / 4


@contextlib.asynccontextmanager
async def _severed(amqp_url: str, proxy: TcpProxy, name: str) -> AsyncIterator[AbstractRobustConnection]:
    """A connection through ``proxy`` whose link has just been cut (the client has noticed)."""
    connection = await amqp.connect(proxy.url(amqp_url), name)
    async with connection:
        closed = asyncio.Event()
        connection.close_callbacks.add(lambda *_: closed.set())
        proxy.sever()
        async with asyncio.timeout(10):
            await closed.wait()
        yield connection


async def test_opening_the_log_on_a_broken_connection_is_unavailable(
    amqp_url: str, proxy: TcpProxy, namespace: str
) -> None:
    async with _severed(amqp_url, proxy, "test broken") as connection:
        with pytest.raises(BrokerUnavailableError):
            async with contextlib.aclosing(read_log(connection, Topology(namespace), 0)) as log:
                await _take(log, 1)


async def test_queue_depths_on_a_broken_connection_are_unavailable(amqp_url: str, proxy: TcpProxy) -> None:
    """What GetStats reads: while the broker is away it is UNAVAILABLE, not INTERNAL."""
    async with _severed(amqp_url, proxy, "test depths") as connection:
        with pytest.raises(BrokerUnavailableError, match="cannot read the queue depths"):
            await amqp.message_counts(connection, ["any"])


async def test_a_log_declared_with_another_retention_is_a_clear_error(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    other = LogRetention(max_age="1D")
    with pytest.raises(amqp.RetentionMismatchError, match="--log-max-age=1D") as caught:
        await EventPublisher.open(connection, Topology(namespace), other)
    assert "RabbitMQ policy" in str(caught.value)
    # The same retention as the log's is fine, for every process and every reconnect.
    same = await EventPublisher.open(connection, Topology(namespace), LogRetention())
    await same.close()


async def test_health_tells_a_lost_connection_from_our_own_close(
    amqp_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="missions.health")
    health = HealthConditions("missions.v1.MissionService", "cut", "closed")
    cut = await amqp.connect(proxy.url(amqp_url), "test cut")
    closed = await amqp.connect(amqp_url, "test closed")
    await health.track(cut, "cut")
    await health.track(closed, "closed")
    lost = asyncio.Event()
    cut.close_callbacks.add(lambda *_: lost.set())
    proxy.sever()
    async with asyncio.timeout(10):
        await lost.wait()
    await closed.close()
    await cut.close()
    assert health.failing == {"cut", "closed"}
    said = [(record.levelno, record.getMessage()) for record in caplog.records if record.name == "missions.health"]
    assert (logging.WARNING, "cut lost; reconnecting") in said
    assert (logging.INFO, "closed closed") in said
    assert not [message for level, message in said if level == logging.WARNING and message.startswith("closed")]
