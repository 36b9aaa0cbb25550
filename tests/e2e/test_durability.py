"""End to end: resuming watches, restarting the service, shutting down cleanly, bad input."""

from __future__ import annotations

import asyncio
import shutil

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_status import rpc_status

from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Stack, payload, readers_view_of_the_log, watch_events

pytestmark = pytest.mark.e2e

E = events_pb2
M = mission_pb2


async def _run_to_end(stack: Stack, count: int, mission_type: str = "echo") -> list[M.Mission]:
    missions = [
        (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type=mission_type, payload=payload(n=i)))).mission
        for i in range(count)
    ]
    watch = pb.WatchEventsRequest(mission_ids=[mission.id for mission in missions])
    async for _ in stack.stub.WatchEvents(watch):
        pass  # the stream ends once every watched mission is final
    return missions


async def _everything(stack: Stack, after: int, until: int) -> list[events_pb2.MissionEvent]:
    """Every event with after < sequence <= until, read through WatchEvents."""
    seen: list[events_pb2.MissionEvent] = []
    async for event in watch_events(stack.stub, pb.WatchEventsRequest(after_sequence=after)):
        if event.sequence > until:
            break
        seen.append(event)
        if event.sequence == until:
            break
    return seen


async def _last_sequence(stack: Stack, missions: list[M.Mission]) -> int:
    """The sequence of the last event of any of ``missions`` (they finish in any order)."""
    found: list[M.Mission] = [
        (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission for mission in missions
    ]
    return max(mission.last_sequence for mission in found)


async def test_resume_with_after_sequence_gets_exactly_the_missed_events(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    first = await _run_to_end(stack, 5)
    # The subscriber saw everything up to the end of the first batch, then disconnected.
    seen_until = await _last_sequence(stack, first)
    second = await _run_to_end(stack, 5)
    head = await _last_sequence(stack, second)

    resumed = await _everything(stack, seen_until, head)
    full = await _everything(stack, 0, head)
    assert resumed == [event for event in full if event.sequence > seen_until]
    assert [event.sequence for event in full] == await readers_view_of_the_log(stack, head)
    assert full[-1].sequence == head
    assert {event.mission_id for event in resumed} == {mission.id for mission in second}


async def test_get_then_watch_from_last_sequence_has_no_gap(stack: Stack) -> None:
    await stack.start_service()
    mission = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"))).mission
    snapshot = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
    assert snapshot.state == M.MISSION_STATE_QUEUED and snapshot.last_sequence >= 1
    stack.start_worker()
    request = pb.WatchEventsRequest(mission_ids=[mission.id], after_sequence=snapshot.last_sequence)
    events = [event async for event in watch_events(stack.stub, request)]
    assert [event.type for event in events] == [E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]


async def test_restarted_service_still_knows_every_mission(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    missions = await _run_to_end(stack, 30)
    last = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="noop"))).mission
    assert stack.service is not None and stack.service.stop() == 0

    await stack.start_service()
    await _assert_knows(stack, [*missions, last])

    # A replica (or a lost state directory) rebuilds the same state from the log alone.
    assert stack.service.stop() == 0
    shutil.rmtree(stack.directory / "state")
    await stack.start_service()
    await _assert_knows(stack, [*missions, last])


async def _assert_knows(stack: Stack, missions: list[M.Mission]) -> None:
    for mission in missions:
        # The rebuilt projection may still be catching up: wait for this mission's final event.
        async for _ in stack.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[mission.id])):
            pass
        found = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
        assert found.state == M.MISSION_STATE_SUCCEEDED
    listed: list[M.Mission] = []
    token = ""
    while True:
        page = await stack.stub.ListMissions(pb.ListMissionsRequest(page_size=7, page_token=token))
        listed.extend(page.missions)
        token = page.next_page_token
        if not token:
            break
    assert [mission.id for mission in listed] == [mission.id for mission in missions]


async def test_sigterm_stops_both_processes_cleanly_and_loses_nothing(stack: Stack) -> None:
    await stack.start_service()
    worker = stack.start_worker("--concurrency", "2", "--drain-timeout", "30")
    slow = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=1)))).mission
    watch = stack.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[slow.id], types=[E.EVENT_TYPE_STARTED]))
    async for _ in watch:
        break  # running now
    assert await asyncio.to_thread(worker.stop) == 0  # drains: the running mission finishes first
    final = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=slow.id))).mission
    assert final.state == M.MISSION_STATE_SUCCEEDED
    queued = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"))).mission
    assert stack.service is not None and await asyncio.to_thread(stack.service.stop) == 0
    await stack.start_service()
    stack.start_worker()
    async for _ in stack.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[queued.id])):
        pass
    final = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=queued.id))).mission
    assert final.state == M.MISSION_STATE_SUCCEEDED


def _field_of(error: grpc.aio.AioRpcError) -> str:
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return str(bad.field_violations[0].field)
    raise AssertionError("no BadRequest detail")


async def test_bad_input_gets_a_clear_status_and_the_service_keeps_serving(stack: Stack) -> None:
    await stack.start_service()
    big = struct_pb2.Struct()
    big.update({"blob": "x" * (300 * 1024)})
    cases = [
        (pb.SubmitMissionRequest(type=""), grpc.StatusCode.INVALID_ARGUMENT, "type"),
        (pb.SubmitMissionRequest(type="echo", payload=big), grpc.StatusCode.INVALID_ARGUMENT, "payload"),
        (pb.SubmitMissionRequest(type="echo", max_attempts=-1), grpc.StatusCode.INVALID_ARGUMENT, "max_attempts"),
    ]
    for request, code, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.stub.SubmitMission(request)
        assert caught.value.code() == code
        assert field in (caught.value.details() or "")
        assert _field_of(caught.value) == field
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.ListMissions(pb.ListMissionsRequest(page_token="not-a-token"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _field_of(caught.value) == "page_token"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.GetMission(pb.GetMissionRequest(mission_id="no-such-mission"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-mission" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stack.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=["no-such-mission"])):
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    # Nothing was queued by the rejected requests, and the service still serves.
    assert not (await stack.stub.ListMissions(pb.ListMissionsRequest())).missions
    accepted = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"))).mission
    assert accepted.state == M.MISSION_STATE_QUEUED


async def test_stopping_service_ends_streams_with_a_resumable_status(stack: Stack) -> None:
    await stack.start_service()
    mission = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="noop"))).mission
    call = stack.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=0))
    first = await call.read()
    assert first.event.mission_id == mission.id  # registered and live
    assert stack.service is not None
    stopped = asyncio.create_task(asyncio.to_thread(stack.service.stop))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while True:
            response = await call.read()
            assert response is not grpc.aio.EOF, "stream ended OK instead of UNAVAILABLE"
    assert await stopped == 0
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    trailing = dict(caught.value.trailing_metadata() or ())
    assert trailing["missions-last-sequence"] == str(first.event.sequence)


async def test_an_idle_stream_gets_heartbeats_with_a_resumable_position(stack: Stack) -> None:
    await stack.start_service("--watch-heartbeat", "0.3")
    echo = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"))).mission
    call = stack.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=0, mission_types=["sleep"]))
    try:
        response = await asyncio.wait_for(call.read(), 30)
    finally:
        call.cancel()
    assert not response.HasField("event")
    # Nothing matched, but the stream has seen everything up to the echo mission's event.
    assert response.heartbeat.last_sequence == echo.last_sequence
    assert response.heartbeat.time.seconds > 0
