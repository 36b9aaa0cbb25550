"""MissionServicer over a real grpc.aio server on 127.0.0.1:0, with the broker faked.

Only the broker is replaced: ``FakeBroker`` numbers each published event like the log
stream would and hands it to a real LogFollower's apply loop, which commits it to a real
MissionStore, resolves read-your-writes waiters and fans it out through a real Hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest
from aio_pika.abc import AbstractConnection
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mission_service.follower import LogFollower
from mission_service.operations import MissionOperations, OperationsConfig
from mission_service.servicer import MissionServicer
from mission_service.status import LAST_SEQUENCE_KEY
from mission_service.store import MissionStore
from mission_service.validation import Limits, encode_page_token
from mission_service.watch import EventFilter, Hub, _Subscription
from mission_service.workers import WorkerRegistry
from missions.errors import BrokerUnavailableError
from missions.eventlog import EventPublisher
from missions.events import new_event
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2_grpc
from missions.v1 import mission_service_pb2 as pb
from tests.unit.factories import struct

E = events_pb2
M = mission_pb2
TIMEOUT = 10.0


class FakeBroker:
    """RabbitMQ's exchange and log stream, in memory.

    ``publish`` is confirmed once the event is appended to the log with the next
    sequence; the event then reaches the follower the way read_log would deliver it.
    """

    def __init__(self) -> None:
        self.log: list[events_pb2.MissionEvent] = []
        self.priorities: list[int | None] = []
        self.follower_inbox: asyncio.Queue[events_pb2.MissionEvent] = asyncio.Queue()
        self.failure: Exception | None = None
        # When set, publishes wait for it (the broker is slow to confirm); ``held`` counts them.
        self.gate: asyncio.Event | None = None
        self.held = 0
        self.holding = asyncio.Condition()

    async def publish(
        self, event: events_pb2.MissionEvent, *, priority: int | None = None, timeout: float = 10.0
    ) -> None:
        if self.failure is not None:
            raise self.failure
        if self.gate is not None:
            async with self.holding:
                self.held += 1
                self.holding.notify_all()
            await self.gate.wait()
        stored = events_pb2.MissionEvent()
        stored.CopyFrom(event)
        stored.sequence = len(self.log) + 1
        self.log.append(stored)
        self.priorities.append(priority)
        self.follower_inbox.put_nowait(stored)

    async def queue_depths(self) -> tuple[int, int]:
        """Work queue: missions whose last event made them runnable; dead letters: DEAD_LETTERED events."""
        last: dict[str, int] = {}
        for event in self.log:
            last[event.mission_id] = event.type
        runnable = {E.EVENT_TYPE_CREATED, E.EVENT_TYPE_REDRIVEN}
        dead = sum(1 for event in self.log if event.type == E.EVENT_TYPE_DEAD_LETTERED)
        return sum(1 for kind in last.values() if kind in runnable), dead

    async def replay(self, after: int) -> AsyncGenerator[events_pb2.MissionEvent, None]:
        """The log after sequence ``after`` (sequences are 1-based positions in the log).

        Unlike read_log it stops at the end of the log instead of following it; watch()
        stops at the hub's head, which the log always reaches, so it never notices.
        """
        index = after
        while index < len(self.log):
            event = events_pb2.MissionEvent()
            event.CopyFrom(self.log[index])
            index += 1
            yield event


class ObservedHub(Hub):
    """A real Hub that reports subscriptions coming and going."""

    def __init__(self, head: int, buffer: int) -> None:
        super().__init__(head, buffer)
        self.subscribed = asyncio.Event()
        self.unsubscribed = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, event_filter: EventFilter) -> Iterator[_Subscription]:
        self.unsubscribed.clear()
        with super().subscribe(event_filter) as sub:
            self.subscribed.set()
            try:
                yield sub
            finally:
                self.subscribed.clear()
                self.unsubscribed.set()


@dataclass
class Service:
    stub: mission_service_pb2_grpc.MissionServiceStub
    broker: FakeBroker
    store: MissionStore
    hub: ObservedHub
    follower: LogFollower

    async def worker_publishes(self, *events: events_pb2.MissionEvent) -> None:
        """Publish as a worker would, and wait until the follower has applied the last one."""
        applied = self.follower.expect(events[-1].id)
        for event in events:
            await self.broker.publish(event)
        await asyncio.wait_for(applied, TIMEOUT)

    async def run_to_completion(self, mission: M.Mission, **result: Any) -> None:
        await self.worker_publishes(*_success_events(mission, **result))

    async def submit(self, **fields: Any) -> M.Mission:
        request = pb.SubmitMissionRequest(**{"type": "echo", **fields})
        response = await self.stub.SubmitMission(request, timeout=TIMEOUT)
        mission = response.mission
        assert isinstance(mission, M.Mission)
        return mission


def _worker_event(
    mission: M.Mission, kind: events_pb2.EventType.ValueType, attempt: int = 1
) -> events_pb2.MissionEvent:
    return new_event(mission, kind, source="worker-1", correlation_id="c", attempt=attempt)


def _success_events(mission: M.Mission, **result: Any) -> list[events_pb2.MissionEvent]:
    started = _worker_event(mission, E.EVENT_TYPE_STARTED)
    started.started.worker_id = "worker-1"
    progress = _worker_event(mission, E.EVENT_TYPE_PROGRESS)
    progress.progress.fraction = 0.5
    completed = _worker_event(mission, E.EVENT_TYPE_COMPLETED)
    completed.completed.result.CopyFrom(struct(**result))
    return [started, progress, completed]


@contextlib.asynccontextmanager
async def running_service(buffer: int = 10_000) -> AsyncIterator[Service]:
    """The servicer on a real grpc.aio server; ``buffer`` is each watcher's live buffer."""
    store = MissionStore(":memory:")
    hub = ObservedHub(head=store.checkpoint(), buffer=buffer)
    # The follower's broker connection is never used: the fake broker feeds its apply loop.
    follower = LogFollower(cast(AbstractConnection, None), Topology("unit"), store, hub.publish)
    broker = FakeBroker()
    operations = MissionOperations(
        OperationsConfig(namespace="unit", source="mission-service/tests", limits=Limits()),
        cast(EventPublisher, broker),
        store,
        follower,
        hub,
        broker.replay,
        WorkerRegistry(),
        broker.queue_depths,
    )
    server = grpc.aio.server()
    mission_service_pb2_grpc.add_MissionServiceServicer_to_server(MissionServicer(operations), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    applying = asyncio.create_task(follower._apply(broker.follower_inbox))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Service(
            stub=mission_service_pb2_grpc.MissionServiceStub(channel),
            broker=broker,
            store=store,
            hub=hub,
            follower=follower,
        )
    finally:
        await channel.close()
        await server.stop(None)
        applying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await applying
        store.close()


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    async with running_service() as running:
        yield running


def _unpack(details: Any, kind: type[Any]) -> list[Any]:
    found = []
    for packed in details:
        assert isinstance(packed, any_pb2.Any)
        if packed.Is(kind.DESCRIPTOR):
            message = kind()
            packed.Unpack(message)
            found.append(message)
    return found


def _violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    [bad_request] = _unpack(status.details, error_details_pb2.BadRequest)
    return [violation.field for violation in bad_request.field_violations]


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    [info] = _unpack(status.details, error_details_pb2.ErrorInfo)
    reason = info.reason
    assert isinstance(reason, str)
    return reason


async def _watch_all(service: Service, request: pb.WatchEventsRequest) -> tuple[list[events_pb2.MissionEvent], Any]:
    """Every event of a stream that must end by itself, and the finished call."""
    call = service.stub.WatchEvents(request, timeout=TIMEOUT)

    async def read() -> list[events_pb2.MissionEvent]:
        return [item.event async for item in call]

    return await asyncio.wait_for(read(), TIMEOUT), call


async def test_submit_returns_the_queued_mission_and_get_finds_it(service: Service) -> None:
    request = pb.SubmitMissionRequest(type="echo", payload=struct(text="hi"), labels={"team": "ops"})
    response = await service.stub.SubmitMission(request, metadata=(("x-correlation-id", "trace-42"),), timeout=TIMEOUT)
    mission = response.mission
    assert uuid.UUID(mission.id)
    assert mission.state == M.MISSION_STATE_QUEUED
    assert (mission.type, mission.payload, dict(mission.labels)) == ("echo", struct(text="hi"), {"team": "ops"})
    assert (mission.priority, mission.max_attempts, mission.attempt) == (M.PRIORITY_NORMAL, 3, 0)
    assert mission.HasField("create_time")
    # Read-your-writes: the answer already reflects the applied CREATED event...
    assert mission.last_sequence == 1
    # ...and so does a read that follows at once.
    got = await service.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id), timeout=TIMEOUT)
    assert got.mission == mission
    [created] = service.broker.log
    assert (created.type, created.mission_id, created.correlation_id) == (E.EVENT_TYPE_CREATED, mission.id, "trace-42")
    assert created.created.mission.state == M.MISSION_STATE_QUEUED
    assert created.source == "mission-service/tests"
    assert service.broker.priorities == [M.PRIORITY_NORMAL]


async def test_submit_keeps_explicit_options_and_generates_a_correlation_id(service: Service) -> None:
    mission = await service.submit(type="sleep", priority=M.PRIORITY_CRITICAL, max_attempts=7)
    assert (mission.priority, mission.max_attempts) == (M.PRIORITY_CRITICAL, 7)
    assert service.broker.priorities == [M.PRIORITY_CRITICAL]
    assert re.fullmatch(r"[0-9a-f]{32}", service.broker.log[0].correlation_id)


async def test_same_idempotent_request_returns_the_same_mission(service: Service) -> None:
    fields = {"payload": struct(n=1), "idempotency_key": "order-17", "labels": {"a": "b"}}
    first = await service.submit(**fields)
    second = await service.submit(**fields)
    assert second.id == first.id
    assert second == first
    assert len(service.broker.log) == 1


async def test_different_keys_make_different_missions(service: Service) -> None:
    first = await service.submit(idempotency_key="k1")
    other = await service.submit(idempotency_key="k2")
    assert first.id != other.id
    assert uuid.UUID(first.id).version == 5


@pytest.mark.parametrize(
    "changed",
    [{"payload": struct(n=2)}, {"type": "sleep"}, {"max_attempts": 5}, {"labels": {"a": "c"}}],
)
async def test_same_key_with_another_request_is_already_exists(service: Service, changed: dict[str, Any]) -> None:
    original = {"payload": struct(n=1), "idempotency_key": "order-17", "labels": {"a": "b"}}
    await service.submit(**original)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.submit(**{**original, **changed})
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "order-17" in (raised.value.details() or "")
    assert _reason(raised.value) == "IDEMPOTENCY_KEY_REUSED"
    assert len(service.broker.log) == 1


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("SubmitMission", pb.SubmitMissionRequest(type=""), "type"),
        ("SubmitMission", pb.SubmitMissionRequest(type="9lives"), "type"),
        ("SubmitMission", pb.SubmitMissionRequest(type="echo", payload=struct(blob="x" * 300_000)), "payload"),
        ("SubmitMission", pb.SubmitMissionRequest(type="echo", max_attempts=-1), "max_attempts"),
        ("ListMissions", pb.ListMissionsRequest(page_token="not-a-token"), "page_token"),
        ("ListMissions", pb.ListMissionsRequest(page_size=-5), "page_size"),
        ("ListMissions", pb.ListMissionsRequest(states=[M.MISSION_STATE_UNSPECIFIED]), "states"),
        ("GetMission", pb.GetMissionRequest(), "mission_id"),
        ("CancelMission", pb.CancelMissionRequest(), "mission_id"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    service: Service, method: str, request_: Any, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(service.stub, method)(request_, timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"{field}: ")
    assert _violated_fields(raised.value) == [field]
    assert service.broker.log == []
    # The server keeps serving.
    mission = await service.submit()
    assert mission.state == M.MISSION_STATE_QUEUED


async def test_bad_watch_request_is_invalid_argument(service: Service) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _watch_all(service, pb.WatchEventsRequest(types=[E.EVENT_TYPE_UNSPECIFIED]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violated_fields(raised.value) == ["types"]


async def test_a_forged_page_token_beyond_any_position_is_invalid_argument(service: Service) -> None:
    token = encode_page_token(2**63, [], "")  # the filter digest is not secret: anyone can build this
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.ListMissions(pb.ListMissionsRequest(page_token=token), timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_ids_are_not_found(service: Service) -> None:
    known = await service.submit()
    for method, request in [
        ("GetMission", pb.GetMissionRequest(mission_id="nope")),
        ("CancelMission", pb.CancelMissionRequest(mission_id="nope")),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(service.stub, method)(request, timeout=TIMEOUT)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND, method
        assert _reason(raised.value) == "MISSION_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _watch_all(service, pb.WatchEventsRequest(mission_ids=[known.id, "nope"]))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'nope'" in (raised.value.details() or "")


async def test_cancel_a_finished_mission_is_failed_precondition(service: Service) -> None:
    mission = await service.submit()
    await service.run_to_completion(mission, ok=True)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.CancelMission(pb.CancelMissionRequest(mission_id=mission.id), timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "MISSION_STATE_SUCCEEDED" in (raised.value.details() or "")
    assert _reason(raised.value) == "MISSION_FINISHED"
    assert len(service.broker.log) == 4  # no CANCELLED event was published


async def test_cancel_an_already_cancelled_mission_returns_it(service: Service) -> None:
    mission = await service.submit()
    cancelled = _worker_event(mission, E.EVENT_TYPE_CANCELLED, attempt=0)
    cancelled.cancelled.reason = "operator"
    await service.worker_publishes(cancelled)
    response = await service.stub.CancelMission(pb.CancelMissionRequest(mission_id=mission.id), timeout=TIMEOUT)
    assert response.mission.state == M.MISSION_STATE_CANCELLED


async def test_cancel_a_queued_mission_publishes_one_cancelled_event(service: Service) -> None:
    mission = await service.submit()
    request = pb.CancelMissionRequest(mission_id=mission.id, reason="not needed")
    response = await service.stub.CancelMission(request, timeout=TIMEOUT)
    assert response.mission.state == M.MISSION_STATE_CANCELLED
    again = await service.stub.CancelMission(request, timeout=TIMEOUT)
    assert again.mission == response.mission
    cancelled = [event for event in service.broker.log if event.type == E.EVENT_TYPE_CANCELLED]
    assert len(cancelled) == 1
    assert cancelled[0].cancelled.reason == "not needed"
    assert cancelled[0].cancelled.cancelled_by.startswith("ipv4:127.0.0.1:")
    assert cancelled[0].cancelled.previous_state == M.MISSION_STATE_QUEUED


async def test_list_missions_pages_through_everything_oldest_first(service: Service) -> None:
    submitted = [await service.submit(type="echo" if n % 2 else "sleep", payload=struct(n=n)) for n in range(5)]
    pages: list[list[str]] = []
    token = ""
    while True:
        response = await service.stub.ListMissions(pb.ListMissionsRequest(page_size=2, page_token=token))
        pages.append([mission.id for mission in response.missions])
        token = response.next_page_token
        if not token:
            break
    ids = [mission.id for mission in submitted]
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]


async def test_list_missions_filters_and_binds_the_token_to_them(service: Service) -> None:
    submitted = [await service.submit(type="echo" if n % 2 else "sleep") for n in range(5)]
    await service.run_to_completion(submitted[1])
    first = await service.stub.ListMissions(pb.ListMissionsRequest(page_size=1, type="echo"))
    assert [mission.id for mission in first.missions] == [submitted[1].id]
    second = await service.stub.ListMissions(
        pb.ListMissionsRequest(page_size=1, type="echo", page_token=first.next_page_token)
    )
    assert [mission.id for mission in second.missions] == [submitted[3].id]
    assert second.next_page_token == ""
    done = await service.stub.ListMissions(pb.ListMissionsRequest(states=[M.MISSION_STATE_SUCCEEDED]))
    assert [mission.id for mission in done.missions] == [submitted[1].id]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.ListMissions(pb.ListMissionsRequest(type="sleep", page_token=first.next_page_token))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violated_fields(raised.value) == ["page_token"]


async def test_watch_a_finished_mission_streams_its_history_then_ends_ok(service: Service) -> None:
    mission = await service.submit()
    other = await service.submit()
    await service.run_to_completion(mission, answer=42)
    events, call = await _watch_all(service, pb.WatchEventsRequest(mission_ids=[mission.id]))
    assert [event.type for event in events] == [
        E.EVENT_TYPE_CREATED,
        E.EVENT_TYPE_STARTED,
        E.EVENT_TYPE_PROGRESS,
        E.EVENT_TYPE_COMPLETED,
    ]
    assert {event.mission_id for event in events} == {mission.id}
    assert other.id not in {event.mission_id for event in events}
    assert [event.sequence for event in events] == [1, 3, 4, 5]
    assert events[-1].completed.result == struct(answer=42)
    assert await call.code() == grpc.StatusCode.OK


async def test_watch_hands_over_from_history_to_live_events(service: Service) -> None:
    mission = await service.submit()
    call = service.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[mission.id]), timeout=TIMEOUT)
    received: asyncio.Queue[events_pb2.MissionEvent | None] = asyncio.Queue()

    async def pump() -> None:
        async for item in call:
            await received.put(item.event)
        await received.put(None)

    pumping = asyncio.create_task(pump())
    try:
        created = await asyncio.wait_for(received.get(), TIMEOUT)
        assert created is not None
        assert created.type == E.EVENT_TYPE_CREATED
        # The stream is now live: the rest happens while it is open.
        await service.run_to_completion(mission)
        live = []
        while (event := await asyncio.wait_for(received.get(), TIMEOUT)) is not None:
            live.append(event)
        assert [event.type for event in live] == [E.EVENT_TYPE_STARTED, E.EVENT_TYPE_PROGRESS, E.EVENT_TYPE_COMPLETED]
        assert [event.sequence for event in [created, *live]] == [1, 2, 3, 4]
        assert await call.code() == grpc.StatusCode.OK
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping


async def test_watch_after_the_final_event_ends_at_once(service: Service) -> None:
    mission = await service.submit()
    await service.run_to_completion(mission)
    events, call = await _watch_all(service, pb.WatchEventsRequest(mission_ids=[mission.id], after_sequence=4))
    assert events == []
    assert await call.code() == grpc.StatusCode.OK


async def test_watch_everything_with_a_type_filter_until_the_client_hangs_up(service: Service) -> None:
    first = await service.submit()
    await service.run_to_completion(first, n=1)
    call = service.stub.WatchEvents(
        pb.WatchEventsRequest(after_sequence=0, types=[E.EVENT_TYPE_COMPLETED]), timeout=TIMEOUT
    )
    stream = call.__aiter__()
    replayed = await asyncio.wait_for(anext(stream), TIMEOUT)
    assert (replayed.event.mission_id, replayed.event.type) == (first.id, E.EVENT_TYPE_COMPLETED)
    second = await service.submit()
    await service.run_to_completion(second, n=2)
    live = await asyncio.wait_for(anext(stream), TIMEOUT)
    assert (live.event.mission_id, live.event.completed.result) == (second.id, struct(n=2))
    call.cancel()
    # Hanging up releases the server-side subscription.
    await asyncio.wait_for(service.hub.unsubscribed.wait(), TIMEOUT)
    assert len(service.hub) == 0


async def test_broker_unavailable_is_unavailable_and_nothing_is_queued(service: Service) -> None:
    service.broker.failure = BrokerUnavailableError("broker did not confirm the event")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.submit(idempotency_key="retry-me")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _reason(raised.value) == "BROKER_UNAVAILABLE"
    listed = await service.stub.ListMissions(pb.ListMissionsRequest(), timeout=TIMEOUT)
    assert list(listed.missions) == []
    assert service.follower._waiters == {}
    # Safe to retry with the same idempotency key once the broker is back.
    service.broker.failure = None
    mission = await service.submit(idempotency_key="retry-me")
    assert mission.last_sequence == 1


async def test_a_lagging_watcher_is_cut_off_with_its_position_and_can_resume() -> None:
    async with running_service(buffer=2) as service:
        mission = await service.submit()
        call = service.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[mission.id]), timeout=TIMEOUT)
        stream = call.__aiter__()
        first = await asyncio.wait_for(anext(stream), TIMEOUT)
        assert first.event.sequence == 1
        # Four events reach the follower as one batch: more than the watcher may buffer.
        started, progress, _ = _success_events(mission)
        more_progress = [_worker_event(mission, E.EVENT_TYPE_PROGRESS) for _ in range(2)]
        for event in more_progress:
            event.progress.fraction = 0.9
        await service.worker_publishes(started, progress, *more_progress)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(anext(stream), TIMEOUT)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _reason(raised.value) == "SUBSCRIBER_TOO_SLOW"
        trailing = dict(raised.value.trailing_metadata() or ())
        assert trailing[LAST_SEQUENCE_KEY] == "1"
        # Resuming after that position misses nothing and repeats nothing.
        resumed = service.stub.WatchEvents(
            pb.WatchEventsRequest(mission_ids=[mission.id], after_sequence=int(trailing[LAST_SEQUENCE_KEY])),
            timeout=TIMEOUT,
        )
        resumed_stream = resumed.__aiter__()
        replayed = [(await asyncio.wait_for(anext(resumed_stream), TIMEOUT)).event.sequence for _ in range(4)]
        assert replayed == [2, 3, 4, 5]
        completed = _worker_event(mission, E.EVENT_TYPE_COMPLETED)
        completed.completed.result.CopyFrom(struct())
        await service.worker_publishes(completed)

        async def read_rest() -> list[events_pb2.MissionEvent]:
            return [item.event async for item in resumed_stream]

        rest = await asyncio.wait_for(read_rest(), TIMEOUT)
        assert [event.sequence for event in rest] == [6]
        assert await resumed.code() == grpc.StatusCode.OK


async def test_a_stopping_service_ends_live_watches_with_unavailable_and_their_position(service: Service) -> None:
    mission = await service.submit()
    call = service.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[mission.id]), timeout=TIMEOUT)
    stream = call.__aiter__()
    assert (await asyncio.wait_for(anext(stream), TIMEOUT)).event.sequence == 1
    service.hub.close()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await asyncio.wait_for(anext(stream), TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _reason(raised.value) == "SERVICE_STOPPING"
    assert dict(raised.value.trailing_metadata() or ())[LAST_SEQUENCE_KEY] == "1"


async def test_concurrent_different_requests_with_one_key_are_already_exists(service: Service) -> None:
    gate = service.broker.gate = asyncio.Event()
    first = asyncio.create_task(service.submit(idempotency_key="k", payload=struct(n=1)))
    second = asyncio.create_task(service.submit(idempotency_key="k", payload=struct(n=2)))
    async with service.broker.holding:
        await asyncio.wait_for(service.broker.holding.wait_for(lambda: service.broker.held == 2), TIMEOUT)
    gate.set()
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    winners = [outcome for outcome in outcomes if isinstance(outcome, M.Mission)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert [loser.code() for loser in losers] == [grpc.StatusCode.ALREADY_EXISTS]


async def test_list_missions_with_many_repeated_states_works(service: Service) -> None:
    mission = await service.submit()
    request = pb.ListMissionsRequest(states=[M.MISSION_STATE_QUEUED] * 1_000_000)  # 1 MB: a legal request
    response = await service.stub.ListMissions(request, timeout=TIMEOUT)
    assert [listed.id for listed in response.missions] == [mission.id]
