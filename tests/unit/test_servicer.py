"""MissionServicer over a real grpc.aio server with the broker faked (tests/unit/service_harness.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mission_service.limits import Limits
from mission_service.paging import encode_page_token
from mission_service.recent import DEFAULT_RECENT_EVENTS
from missions import codec, retrying_publisher
from missions.errors import BrokerUnavailableError
from missions.events import new_event
from missions.metadata import LAST_SEQUENCE_KEY
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.unit.factories import details_of, struct
from tests.unit.service_harness import (
    TIMEOUT,
    Service,
    as_principal,
    dead_letter,
    published_events,
    running_service,
    start_attempt,
    success_events,
    tokens_file,
    violated_fields,
    worker_event,
)

E = events_pb2
M = mission_pb2


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    [info] = details_of(status.details, error_details_pb2.ErrorInfo)
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
    # The work message went out only once the log held the CREATED event.
    [(work, priority, logged)] = service.broker.work
    assert (work.id, priority, logged) == (created.id, M.PRIORITY_NORMAL, 1)


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


async def test_a_batch_accepts_and_rejects_each_mission_on_its_own_in_order(service: Service) -> None:
    earlier = await service.submit(payload=struct(n=1), idempotency_key="order-17")
    batch = pb.SubmitMissionsRequest(
        missions=[
            pb.SubmitMissionRequest(type="echo", payload=struct(n=2)),
            pb.SubmitMissionRequest(type="no spaces allowed"),
            pb.SubmitMissionRequest(type="echo", payload=struct(n=1), idempotency_key="order-17"),
            pb.SubmitMissionRequest(type="sleep", payload=struct(n=1), idempotency_key="order-17"),
        ]
    )
    metadata = (("x-correlation-id", "batch-7"),)
    response = await service.stub.SubmitMissions(batch, metadata=metadata, timeout=TIMEOUT)
    queued, invalid, repeated, conflicting = response.results
    assert queued.mission.type == "echo" and queued.mission.correlation_id == "batch-7"
    got = await service.stub.GetMission(pb.GetMissionRequest(mission_id=queued.mission.id), timeout=TIMEOUT)
    assert got.mission.id == queued.mission.id  # read-your-writes, as for SubmitMission
    assert invalid.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert (invalid.error.field, invalid.error.reason) == ("type", "INVALID_ARGUMENT")
    assert repeated.mission == earlier
    assert conflicting.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert conflicting.error.reason == "IDEMPOTENCY_KEY_REUSED"
    assert len(service.broker.log) == 2  # the earlier mission and the one new valid one


async def test_a_batch_without_a_correlation_id_gives_each_mission_its_own(service: Service) -> None:
    batch = pb.SubmitMissionsRequest(missions=[pb.SubmitMissionRequest(type="echo") for _ in range(3)])
    response = await service.stub.SubmitMissions(batch, timeout=TIMEOUT)
    assert len({result.mission.correlation_id for result in response.results}) == 3


@pytest.mark.parametrize("size", [0, Limits().max_batch_missions + 1])
async def test_an_empty_or_oversized_batch_is_invalid_as_a_whole(service: Service, size: int) -> None:
    batch = pb.SubmitMissionsRequest(missions=[pb.SubmitMissionRequest(type="noop")] * size)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.SubmitMissions(batch, timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "missions" in (raised.value.details() or "")
    assert service.broker.log == []


async def test_a_broker_outage_fails_each_mission_of_a_batch_as_unavailable(service: Service) -> None:
    service.broker.failure = BrokerUnavailableError("down")
    batch = pb.SubmitMissionsRequest(missions=[pb.SubmitMissionRequest(type="echo")] * 2)
    response = await service.stub.SubmitMissions(batch, timeout=TIMEOUT)
    assert [result.error.code for result in response.results] == [grpc.StatusCode.UNAVAILABLE.value[0]] * 2
    assert {result.error.reason for result in response.results} == {"BROKER_UNAVAILABLE"}


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
        ("ListMissions", pb.ListMissionsRequest(id_prefix="e8987c7"), "id_prefix"),
        ("ListMissions", pb.ListMissionsRequest(id_prefix="e8987c7d%"), "id_prefix"),
        ("ListMissions", pb.ListMissionsRequest(label_selector="team"), "label_selector"),
        ("ListMissions", pb.ListMissionsRequest(order_by="create_time asc"), "order_by"),
        ("ListMissions", pb.ListMissionsRequest(order_by="end_time desc"), "order_by"),
        ("ListMissions", pb.ListMissionsRequest(order_by="-create_time"), "order_by"),
        (
            "ListMissions",
            pb.ListMissionsRequest(min_create_time=Timestamp(seconds=20), max_create_time=Timestamp(seconds=10)),
            "max_create_time",
        ),
        (
            "ListMissions",
            pb.ListMissionsRequest(min_end_time=Timestamp(seconds=20), max_end_time=Timestamp(seconds=10)),
            "max_end_time",
        ),
        ("GetMission", pb.GetMissionRequest(), "mission_id"),
        ("CancelMission", pb.CancelMissionRequest(), "mission_id"),
        ("RedriveMission", pb.RedriveMissionRequest(), "mission_id"),
        ("RedriveMission", pb.RedriveMissionRequest(mission_id="m1", max_attempts=-1), "max_attempts"),
        ("RedriveMission", pb.RedriveMissionRequest(mission_id="m1", max_attempts=101), "max_attempts"),
        ("ListDeadLetters", pb.ListDeadLettersRequest(page_size=-1), "page_size"),
        ("ListDeadLetters", pb.ListDeadLettersRequest(page_token="not-a-token"), "page_token"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    service: Service, method: str, request_: Any, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(service.stub, method)(request_, timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"{field}: ")
    assert violated_fields(raised.value) == [field]
    assert service.broker.log == []
    # The server keeps serving.
    mission = await service.submit()
    assert mission.state == M.MISSION_STATE_QUEUED


async def test_bad_watch_request_is_invalid_argument(service: Service) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _watch_all(service, pb.WatchEventsRequest(types=[E.EVENT_TYPE_UNSPECIFIED]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == ["types"]


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
        ("RedriveMission", pb.RedriveMissionRequest(mission_id="nope")),
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
    cancelled = worker_event(mission, E.EVENT_TYPE_CANCELLED, attempt=0)
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


async def _pages(service: Service, **filters: Any) -> list[list[str]]:
    """The ids of every page of a listing, following its tokens."""
    pages: list[list[str]] = []
    token = ""
    while True:
        request = pb.ListMissionsRequest(page_token=token, **filters)
        response = await service.stub.ListMissions(request, timeout=TIMEOUT)
        pages.append([mission.id for mission in response.missions])
        token = response.next_page_token
        if not token:
            return pages


async def test_list_missions_pages_through_everything_oldest_first(service: Service) -> None:
    submitted = [await service.submit(type="echo" if n % 2 else "sleep", payload=struct(n=n)) for n in range(5)]
    ids = [mission.id for mission in submitted]
    assert await _pages(service, page_size=2) == [ids[0:2], ids[2:4], ids[4:5]]


async def test_list_missions_pages_through_everything_newest_first(service: Service) -> None:
    ids = [(await service.submit(type="echo" if n % 2 else "sleep")).id for n in range(5)]
    newest = ids[::-1]
    assert await _pages(service, page_size=2, order_by="create_time desc") == [newest[0:2], newest[2:4], newest[4:5]]
    assert await _pages(service, page_size=1, order_by=" create_time   desc ", type="echo") == [[ids[3]], [ids[1]]]
    assert await _pages(service, page_size=5, order_by="create_time") == [ids]


async def test_a_newest_first_listing_goes_on_below_its_last_page_as_missions_come(service: Service) -> None:
    ids = [(await service.submit()).id for _ in range(3)]
    first = await service.stub.ListMissions(pb.ListMissionsRequest(page_size=2, order_by="create_time desc"))
    await service.submit()  # newer than the first page: not met again further down
    request = pb.ListMissionsRequest(page_size=2, order_by="create_time desc", page_token=first.next_page_token)
    rest = await service.stub.ListMissions(request, timeout=TIMEOUT)
    assert [mission.id for mission in first.missions] == [ids[2], ids[1]]
    assert [mission.id for mission in rest.missions] == [ids[0]]
    assert rest.next_page_token == ""


@pytest.mark.parametrize(("given", "other"), [("", "create_time desc"), ("create_time desc", "create_time")])
async def test_a_list_page_token_is_bound_to_its_order(service: Service, given: str, other: str) -> None:
    for _ in range(3):
        await service.submit()
    first = await service.stub.ListMissions(pb.ListMissionsRequest(page_size=1, order_by=given))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        request = pb.ListMissionsRequest(page_size=1, order_by=other, page_token=first.next_page_token)
        await service.stub.ListMissions(request, timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == ["page_token"]


async def test_an_unknown_order_names_the_orders_there_are(service: Service) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.ListMissions(pb.ListMissionsRequest(order_by="newest"), timeout=TIMEOUT)
    details = raised.value.details() or ""
    assert details.startswith("order_by: 'newest'")
    assert '"create_time"' in details and '"create_time desc"' in details


async def test_an_explicit_oldest_first_order_takes_the_default_orders_tokens(service: Service) -> None:
    ids = [(await service.submit()).id for _ in range(2)]
    first = await service.stub.ListMissions(pb.ListMissionsRequest(page_size=1))
    request = pb.ListMissionsRequest(page_size=1, order_by="create_time", page_token=first.next_page_token)
    second = await service.stub.ListMissions(request, timeout=TIMEOUT)
    assert [mission.id for mission in second.missions] == [ids[1]]


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
    assert violated_fields(raised.value) == ["page_token"]


async def _listed(service: Service, **filters: Any) -> list[str]:
    response = await service.stub.ListMissions(pb.ListMissionsRequest(**filters), timeout=TIMEOUT)
    return [mission.id for mission in response.missions]


async def test_list_missions_by_labels_id_prefix_and_times(service: Service) -> None:
    ops = await service.submit(labels={"team": "ops", "env": "prod"})
    web = await service.submit(labels={"team": "web", "env": "prod"})
    later = await service.submit(labels={"team": "ops"})
    await service.run_to_completion(web)
    assert await _listed(service, label_selector="team=ops") == [ops.id, later.id]
    assert await _listed(service, label_selector="env=prod, team=ops") == [ops.id]
    assert await _listed(service, id_prefix=web.id[:8].upper()) == [web.id]
    assert await _listed(service, min_create_time=web.create_time) == [web.id, later.id]
    assert await _listed(service, max_create_time=web.create_time) == [ops.id]
    finished = (await service.stub.GetMission(pb.GetMissionRequest(mission_id=web.id))).mission
    assert await _listed(service, min_end_time=finished.end_time) == [web.id]
    assert await _listed(service, max_end_time=finished.end_time) == []


@pytest.mark.parametrize(
    "other",
    [
        {"label_selector": "team=web"},
        {"id_prefix": "00000000"},
        {"min_create_time": Timestamp(seconds=1)},
        {"max_end_time": Timestamp(seconds=2_000_000_000)},
    ],
)
async def test_a_list_page_token_is_bound_to_the_new_filters(service: Service, other: dict[str, Any]) -> None:
    for _ in range(2):
        await service.submit(labels={"team": "ops"})
    first = await service.stub.ListMissions(pb.ListMissionsRequest(page_size=1, label_selector="team=ops"))
    assert first.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.ListMissions(
            pb.ListMissionsRequest(page_size=1, page_token=first.next_page_token, **other), timeout=TIMEOUT
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == ["page_token"]


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
    # The request's own waiter is gone; one remains: the watch for the event turning up in
    # the log anyway (a lost confirm), which would then get its work message.
    assert service.follower.awaited == 1
    assert service.broker.work == []
    # Safe to retry with the same idempotency key once the broker is back.
    service.broker.failure = None
    mission = await service.submit(idempotency_key="retry-me")
    assert mission.last_sequence == 1


async def test_a_work_message_the_broker_does_not_confirm_is_retried_until_it_is(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrying_publisher, "_FIRST_RETRY_S", 0.0001)
    service.broker.dispatch_failures = 3
    mission = await service.submit()
    [(work, _, logged)] = service.broker.work
    assert (work.mission_id, logged) == (mission.id, 1)
    assert service.broker.dispatch_failures == 0


async def test_a_submission_whose_work_message_stays_unconfirmed_is_unavailable_promptly_and_still_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retrying_publisher, "_FIRST_RETRY_S", 0.001)
    monkeypatch.setattr(retrying_publisher, "_MAX_RETRY_S", 0.01)
    async with running_service(queue_timeout=0.2) as service:
        service.broker.dispatch_failures = 10**9  # the broker died after confirming CREATED
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await service.submit(idempotency_key="k")
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _reason(raised.value) == "BROKER_UNAVAILABLE"
        assert "retry with the same idempotency key" in (raised.value.details() or "")
        service.broker.dispatch_failures = 0  # back: the work message goes out without the client
        async with asyncio.timeout(TIMEOUT):
            while not service.broker.work:
                service.broker.dispatched.clear()
                await service.broker.dispatched.wait()
        [(work, _, _)] = service.broker.work
        assert work.mission_id == service.commands.mission_id_for("k")


async def test_submissions_wait_their_turn_while_a_busy_broker_keeps_confirming() -> None:
    # Each work message takes half the timeout, one after another: the last of 8 comes
    # 4 timeouts after the first call, but every window saw confirms.
    async with running_service(queue_timeout=0.4) as service:
        service.broker.dispatch_delay = 0.2
        missions = await asyncio.gather(*(service.submit() for _ in range(8)))
    assert len({mission.id for mission in missions}) == 8
    assert len(service.broker.work) == 8


async def test_a_created_stored_without_a_confirm_still_gets_its_work_message_once_the_log_shows_it(
    service: Service,
) -> None:
    service.broker.lost_confirms = 1
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.submit()  # no idempotency key: the client cannot finish the job itself
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    [created] = service.broker.log
    async with asyncio.timeout(TIMEOUT):
        while not service.broker.work:
            await service.broker.dispatched.wait()
    [(work, _, logged)] = service.broker.work
    assert (work.id, logged) == (created.id, 1)


async def test_a_retried_submission_dispatches_a_mission_again_only_while_it_has_never_started(
    service: Service,
) -> None:
    first = await service.submit(idempotency_key="order-9")
    # The replica that took the first submission may have died before its work message.
    again = await service.submit(idempotency_key="order-9")
    assert again == first
    dispatched = [(work.type, work.mission_id) for work, _, _ in service.broker.work]
    assert dispatched == [(E.EVENT_TYPE_CREATED, first.id)] * 2
    await service.run_to_completion(first)
    await service.submit(idempotency_key="order-9")
    assert len(service.broker.work) == 2
    assert len(service.broker.log) == 4  # CREATED, STARTED, PROGRESS, COMPLETED: retries publish no event


async def test_a_lagging_watcher_is_cut_off_with_its_position_and_can_resume() -> None:
    async with running_service(buffer=1) as service:
        mission = await service.submit()
        call = service.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[mission.id]), timeout=TIMEOUT)
        stream = call.__aiter__()
        first = await asyncio.wait_for(anext(stream), TIMEOUT)
        assert first.event.sequence == 1
        # Four events reach the follower as one batch: more than the watcher may buffer
        # (PROGRESS is coalesced, but STARTED then PROGRESS already need two places).
        started, progress, _ = success_events(mission)
        more_progress = [worker_event(mission, E.EVENT_TYPE_PROGRESS) for _ in range(2)]
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
        completed = worker_event(mission, E.EVENT_TYPE_COMPLETED)
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


async def _submit_together(
    service: Service, monkeypatch: pytest.MonkeyPatch, requests: Sequence[dict[str, Any]]
) -> list[M.Mission | BaseException]:
    """Submit ``requests`` concurrently while the broker holds every publish, and release it
    only once each call has looked its mission up, so every one is in flight at once."""
    looked, everyone = 0, asyncio.Event()
    get = service.store.get

    def counting_get(mission_id: str) -> M.Mission | None:
        nonlocal looked
        looked += 1
        if looked >= len(requests):
            everyone.set()
        return get(mission_id)

    monkeypatch.setattr(service.store, "get", counting_get)
    service.broker.gate = asyncio.Event()
    calls = [asyncio.create_task(service.submit(**request)) for request in requests]
    await asyncio.wait_for(everyone.wait(), TIMEOUT)
    service.broker.gate.set()
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_concurrent_submissions_of_one_key_share_one_append(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = await _submit_together(service, monkeypatch, [{"idempotency_key": "k", "payload": struct(n=1)}] * 20)
    assert all(isinstance(outcome, M.Mission) for outcome in outcomes), outcomes
    assert len({cast(M.Mission, outcome).id for outcome in outcomes}) == 1
    assert len(published_events(service, E.EVENT_TYPE_CREATED)) == 1
    assert len(service.broker.work) == 1


async def test_concurrent_different_requests_with_one_key_are_already_exists(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = [{"idempotency_key": "k", "payload": struct(n=n)} for n in (1, 2)]
    outcomes = await _submit_together(service, monkeypatch, requests)
    winners = [outcome for outcome in outcomes if isinstance(outcome, M.Mission)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert [loser.code() for loser in losers] == [grpc.StatusCode.ALREADY_EXISTS]
    assert len(published_events(service, E.EVENT_TYPE_CREATED)) == 1


def _created_elsewhere(mission_id: str, **fields: Any) -> events_pb2.MissionEvent:
    """The CREATED another replica appends for a submission with the same idempotency key."""
    mission = M.Mission(
        id=mission_id,
        type="echo",
        state=M.MISSION_STATE_QUEUED,
        priority=M.PRIORITY_NORMAL,
        max_attempts=3,
        submitted_by="elsewhere",
        **fields,
    )
    event = new_event(mission, E.EVENT_TYPE_CREATED, source="mission-service/elsewhere", correlation_id="c")
    event.created.mission.CopyFrom(mission)
    return event


@pytest.mark.parametrize("same_request", [True, False], ids=["same-request", "different-request"])
async def test_a_submission_whose_created_comes_second_in_the_log_sends_no_work(
    service: Service, same_request: bool
) -> None:
    service.broker.gate = asyncio.Event()
    payload = struct(n=1)
    ours = asyncio.create_task(service.submit(idempotency_key="k", payload=payload, max_attempts=3))
    async with service.broker.holding:
        await asyncio.wait_for(service.broker.holding.wait_for(lambda: service.broker.held == 1), TIMEOUT)
    mission_id = service.commands.mission_id_for("k")
    # Another replica's CREATED for the same key reaches the log while ours is in flight.
    theirs = _created_elsewhere(mission_id, payload=payload if same_request else struct(n=2))
    await service.worker_publishes_now(theirs)
    service.broker.gate.set()
    if same_request:
        mission = await ours
        assert mission.id == mission_id
    else:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ours
        assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert service.broker.work == []  # the replica whose CREATED came first dispatches it
    stored = service.store.get(mission_id)
    assert stored is not None
    assert (stored.submitted_by, stored.last_sequence) == ("elsewhere", 1)  # ours changed nothing


@pytest.fixture(params=["from-memory", "from-the-log"])
async def either_replay(request: pytest.FixtureRequest) -> AsyncIterator[Service]:
    """A service whose replays come from its window of recent events, or from the log."""
    async with running_service(recent_events=DEFAULT_RECENT_EVENTS if request.param == "from-memory" else 0) as service:
        yield service


async def test_readers_never_see_a_second_creation_or_a_second_start(either_replay: Service) -> None:
    service = either_replay
    mission = await service.submit(idempotency_key="k")
    live = service.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[mission.id]), timeout=TIMEOUT)
    seen = live.__aiter__()
    assert (await asyncio.wait_for(anext(seen), TIMEOUT)).event.type == E.EVENT_TYPE_CREATED
    copy = _created_elsewhere(mission.id)
    first = worker_event(mission, E.EVENT_TYPE_STARTED)
    first.started.worker_session = "session-1"
    second = worker_event(mission, E.EVENT_TYPE_STARTED)  # a copy of the work message, started elsewhere
    second.started.worker_session = "session-2"
    withdrawn = worker_event(mission, E.EVENT_TYPE_STARTED)
    withdrawn.started.worker_session = "session-2"
    withdrawn.started.withdrawn = True
    completed = worker_event(mission, E.EVENT_TYPE_COMPLETED)
    await service.worker_publishes(copy, first, second, withdrawn, completed)
    expected = [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]
    rest = [response.event async for response in seen]
    assert [E.EVENT_TYPE_CREATED] + [event.type for event in rest] == expected
    assert rest[0].id == first.id
    replayed = service.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[mission.id]), timeout=TIMEOUT)
    assert [response.event.type async for response in replayed] == expected
    stored = service.store.get(mission.id)
    assert stored is not None
    assert (stored.worker_session, stored.last_sequence) == ("session-1", len(service.broker.log))


async def test_list_missions_with_many_repeated_states_works(service: Service) -> None:
    mission = await service.submit()
    request = pb.ListMissionsRequest(states=[M.MISSION_STATE_QUEUED] * 1_000_000)  # 1 MB: a legal request
    response = await service.stub.ListMissions(request, timeout=TIMEOUT)
    assert [listed.id for listed in response.missions] == [mission.id]


async def test_cancel_a_running_mission_records_that_it_was_running(service: Service) -> None:
    mission = await service.submit()
    await start_attempt(service, mission)
    response = await service.stub.CancelMission(
        pb.CancelMissionRequest(mission_id=mission.id, reason="stop it"), timeout=TIMEOUT
    )
    assert response.mission.state == M.MISSION_STATE_CANCELLED
    [cancelled] = published_events(service, E.EVENT_TYPE_CANCELLED)
    assert cancelled.cancelled.previous_state == M.MISSION_STATE_RUNNING
    assert cancelled.attempt == 1
    assert cancelled.cancelled.reason == "stop it"


def _heartbeat(
    worker_id: str, session: str, state: worker_pb2.WorkerState.ValueType = worker_pb2.WORKER_STATE_ACTIVE
) -> worker_pb2.Worker:
    worker = worker_pb2.Worker(id=worker_id, session=session, host="host-1", pid=7, concurrency=4, state=state)
    worker.handler_types.extend(["echo", "sleep"])
    worker.heartbeat_interval.FromTimedelta(timedelta(seconds=2))
    return worker


async def test_get_stats_counts_states_queues_and_recent_outcomes(service: Service) -> None:
    succeeded, dead, running, _queued, long_ago = [await service.submit() for _ in range(5)]
    await service.run_to_completion(succeeded)
    await dead_letter(service, dead)
    await start_attempt(service, running)
    started, _, completed = success_events(long_ago)
    completed.time.FromDatetime(datetime.now(UTC) - timedelta(hours=2))
    await service.worker_publishes(started, completed)
    service.workers.record(_heartbeat("w1", "s1"))
    service.workers.record(_heartbeat("w2", "s2", worker_pb2.WORKER_STATE_STOPPING))
    stats = await service.stub.GetStats(pb.GetStatsRequest(), timeout=TIMEOUT)
    assert {count.state: count.count for count in stats.states} == {
        M.MISSION_STATE_QUEUED: 1,
        M.MISSION_STATE_RUNNING: 1,
        M.MISSION_STATE_SUCCEEDED: 2,
        M.MISSION_STATE_FAILED: 1,
    }
    assert [count.state for count in stats.states] == sorted(count.state for count in stats.states)
    assert (stats.queue_depth, stats.dead_letter_depth) == (1, 1)
    assert stats.running == 1
    assert stats.succeeded_last_hour == 1  # the one that completed two hours ago is not counted
    assert stats.failed_last_hour == 1
    assert stats.active_workers == 1
    assert stats.last_sequence == len(service.broker.log)


async def test_get_stats_lists_waiting_missions_and_workers_per_type(service: Service) -> None:
    queued = [await service.submit(type=kind) for kind in ("echo", "resize", "resize", "sleep")]
    await start_attempt(service, queued[3])  # RUNNING: sleep has no waiting mission left
    service.workers.record(_heartbeat("w1", "s1"))  # echo and sleep
    service.workers.record(_heartbeat("w2", "s2", worker_pb2.WORKER_STATE_STOPPING))
    stats = await service.stub.GetStats(pb.GetStatsRequest(), timeout=TIMEOUT)
    assert [
        (kind.mission_type, kind.waiting, kind.queue_depth, kind.active_workers) for kind in stats.mission_types
    ] == [("echo", 1, 1, 1), ("resize", 2, 2, 0), ("sleep", 0, 0, 1)]
    assert service.broker.depths_asked == [["echo", "resize", "sleep"]]
    assert stats.queue_depth == 3  # the sum over the listed types' work queues


async def test_get_stats_of_an_empty_service(service: Service) -> None:
    stats = await service.stub.GetStats(pb.GetStatsRequest(), timeout=TIMEOUT)
    assert stats == pb.GetStatsResponse()


async def test_list_workers_returns_what_the_heartbeats_said() -> None:
    clock_now = [100.0]
    async with running_service(clock=lambda: clock_now[0]) as service:
        first = _heartbeat("w1", "s1")
        restarted = _heartbeat("w1", "s0")
        service.workers.record(first)
        service.workers.record(restarted)
        response = await service.stub.ListWorkers(pb.ListWorkersRequest(), timeout=TIMEOUT)
        assert list(response.workers) == [restarted, first]
        clock_now[0] += 60.0  # one minute of silence: both are lost, and still listed
        service.workers.record(_heartbeat("w2", "s2"))
        response = await service.stub.ListWorkers(pb.ListWorkersRequest(), timeout=TIMEOUT)
        assert [(worker.session, worker.state) for worker in response.workers] == [
            ("s0", worker_pb2.WORKER_STATE_LOST),
            ("s1", worker_pb2.WORKER_STATE_LOST),
            ("s2", worker_pb2.WORKER_STATE_ACTIVE),
        ]
        assert list(response.workers[0].handler_types) == ["echo", "sleep"]
        clock_now[0] += 600.0  # gone for more than ten minutes: only listed on request
        service.workers.record(_heartbeat("w2", "s2"))
        response = await service.stub.ListWorkers(pb.ListWorkersRequest(), timeout=TIMEOUT)
        assert [worker.session for worker in response.workers] == ["s2"]
        response = await service.stub.ListWorkers(pb.ListWorkersRequest(include_gone=True), timeout=TIMEOUT)
        assert [worker.session for worker in response.workers] == ["s0", "s1", "s2"]


async def test_watching_a_redriven_mission_continues_past_its_old_dead_letter(service: Service) -> None:
    mission = await dead_letter(service, await service.submit())
    await service.stub.RedriveMission(pb.RedriveMissionRequest(mission_id=mission.id), timeout=TIMEOUT)
    call = service.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[mission.id]), timeout=TIMEOUT)
    received: asyncio.Queue[events_pb2.MissionEvent | None] = asyncio.Queue()

    async def pump() -> None:
        async for item in call:
            await received.put(item.event)
        await received.put(None)

    pumping = asyncio.create_task(pump())
    try:
        seen: list[int] = []
        while (event := await asyncio.wait_for(received.get(), TIMEOUT)) is not None:
            seen.append(event.type)
            if event.type == E.EVENT_TYPE_REDRIVEN:
                break
        assert E.EVENT_TYPE_REDRIVEN in seen
    finally:
        call.cancel()
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping


async def test_a_watch_that_starts_in_the_window_of_recent_events_never_reads_the_log(service: Service) -> None:
    mission = await service.submit()
    await service.run_to_completion(mission)
    request = pb.WatchEventsRequest(mission_ids=[mission.id])
    replayed = [response.event async for response in service.stub.WatchEvents(request, timeout=TIMEOUT)]
    assert [event.type for event in replayed] == [
        E.EVENT_TYPE_CREATED,
        E.EVENT_TYPE_STARTED,
        E.EVENT_TYPE_PROGRESS,
        E.EVENT_TYPE_COMPLETED,
    ]
    assert service.broker.replays == []


async def test_a_watch_from_before_the_window_reads_the_log() -> None:
    async with running_service(recent_events=2) as service:
        mission = await service.submit()
        await service.run_to_completion(mission)  # 4 events: the window holds the last 2
        request = pb.WatchEventsRequest(after_sequence=1)
        call = service.stub.WatchEvents(request, timeout=TIMEOUT)
        stream = call.__aiter__()
        resumed = [(await asyncio.wait_for(anext(stream), TIMEOUT)).event.sequence for _ in range(3)]
        call.cancel()
        assert resumed == [2, 3, 4]
        assert service.broker.replays == [1]


async def test_events_the_follower_never_read_are_not_served_from_memory(service: Service) -> None:
    mission = await service.submit()  # sequence 1
    # The follower resumes at the record at offset 9: the log's retention dropped those before it.
    later = worker_event(mission, E.EVENT_TYPE_STARTED)
    applied = service.follower.expect(later.id)
    service.broker.store(later, sequence=codec.sequence_at(9))
    await asyncio.wait_for(applied, TIMEOUT)
    call = service.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=1), timeout=TIMEOUT)
    waiting = asyncio.ensure_future(anext(call.__aiter__()))
    await asyncio.wait_for(service.broker.replaying.wait(), TIMEOUT)
    call.cancel()
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        await waiting
    assert service.broker.replays == [1]


async def test_only_an_admin_may_cancel_another_principals_mission(tmp_path: pathlib.Path) -> None:
    tokens = tokens_file(tmp_path, alice="submitter", bob="submitter", root="admin")
    async with running_service(tokens_file=tokens) as service:
        submitted = await service.stub.SubmitMission(
            pb.SubmitMissionRequest(type="echo"), metadata=as_principal("alice")
        )
        cancel = pb.CancelMissionRequest(mission_id=submitted.mission.id)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await service.stub.CancelMission(cancel, metadata=as_principal("bob"), timeout=TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert _reason(refused.value) == "NOT_MISSION_OWNER"
        assert "'bob' may only cancel its own missions" in str(refused.value.details())
        cancelled = await service.stub.CancelMission(cancel, metadata=as_principal("root"), timeout=TIMEOUT)
        assert cancelled.mission.state == M.MISSION_STATE_CANCELLED


async def test_an_unknown_mission_is_not_found_before_its_owner_is_asked(tmp_path: pathlib.Path) -> None:
    async with running_service(tokens_file=tokens_file(tmp_path, bob="submitter")) as service:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await service.stub.CancelMission(pb.CancelMissionRequest(mission_id="nope"), metadata=as_principal("bob"))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_principal_holds_at_most_its_quota_of_watch_streams(tmp_path: pathlib.Path) -> None:
    tokens = tokens_file(tmp_path, alice="reader", bob="reader", root="admin")
    async with running_service(tokens_file=tokens, max_watch_streams=1) as service:
        await service.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"), metadata=as_principal("root"))
        everything = pb.WatchEventsRequest(after_sequence=0)
        first = service.stub.WatchEvents(everything, metadata=as_principal("alice"), timeout=TIMEOUT)
        await asyncio.wait_for(anext(first.__aiter__()), TIMEOUT)  # the stream is open and counted
        second = service.stub.WatchEvents(everything, metadata=as_principal("alice"), timeout=TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(anext(second.__aiter__()), TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _reason(refused.value) == "TOO_MANY_STREAMS"
        other = service.stub.WatchEvents(everything, metadata=as_principal("bob"), timeout=TIMEOUT)
        assert (await asyncio.wait_for(anext(other.__aiter__()), TIMEOUT)).event.sequence
        other.cancel()
        first.cancel()
        # The stream ended, its place is free again (the server notices the cancel soon after).
        for _ in range(100):
            again = service.stub.WatchEvents(everything, metadata=as_principal("alice"), timeout=TIMEOUT)
            try:
                await asyncio.wait_for(anext(again.__aiter__()), TIMEOUT)
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the quota was never released")
        again.cancel()


async def test_refusals_of_the_interceptors_carry_error_details(tmp_path: pathlib.Path) -> None:
    async with running_service(tokens_file=tokens_file(tmp_path, rita="reader")) as service:
        submit = pb.SubmitMissionRequest(type="echo")
        for metadata, code, reason in [
            ((), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING"),
            (as_principal("mallory"), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_UNKNOWN"),
            (as_principal("rita"), grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await service.stub.SubmitMission(submit, metadata=metadata, timeout=TIMEOUT)
            assert (refused.value.code(), _reason(refused.value)) == (code, reason)
            status = rpc_status.from_call(refused.value)
            assert status is not None
            [info] = details_of(status.details, error_details_pb2.ErrorInfo)
            assert info.domain == "missions.v1"


async def test_an_unexpected_error_is_internal_with_a_logged_id_not_unknown(
    service: Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(include_gone: bool = False) -> list[worker_pb2.Worker]:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(service.workers, "list", broken)
    with caplog.at_level(logging.ERROR, logger="mission_service.status"), pytest.raises(grpc.aio.AioRpcError) as failed:
        await service.stub.ListWorkers(pb.ListWorkersRequest(), timeout=TIMEOUT)
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    match = re.fullmatch(r"internal error \(id ([0-9a-f]{12})\)", str(failed.value.details()))
    assert match is not None
    assert _reason(failed.value) == "INTERNAL"
    [record] = [record for record in caplog.records if match.group(1) in record.getMessage()]
    assert record.exc_info is not None and "secret detail" in str(record.exc_info[1])
