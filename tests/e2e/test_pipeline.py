"""End to end: the real mission-service and mission-worker processes on the real RabbitMQ."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import timedelta

import grpc
import pytest

from missions.backoff import backoff_bound
from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Stack, drain, payload, watch_events, watching

pytestmark = pytest.mark.e2e

E = events_pb2
M = mission_pb2


async def _submit_all(stack: Stack, requests: list[pb.SubmitMissionRequest], clients: int = 8) -> list[M.Mission]:
    """Submit through ``clients`` concurrent callers, preserving request order in the result."""
    results: list[M.Mission | None] = [None] * len(requests)

    async def client(offset: int) -> None:
        for index in range(offset, len(requests), clients):
            results[index] = (await stack.stub.SubmitMission(requests[index], timeout=30)).mission

    await asyncio.gather(*(client(offset) for offset in range(clients)))
    return [mission for mission in results if mission is not None]


async def test_two_hundred_echo_missions_from_concurrent_clients(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker("--concurrency", "8")
    stack.start_worker("--concurrency", "8")
    # after_sequence=0 on a fresh namespace: every event, however early the stream registers.
    async with watching(stack.stub, pb.WatchEventsRequest(after_sequence=0)) as live:
        requests = [pb.SubmitMissionRequest(type="echo", payload=payload(n=i, text=f"mission {i}")) for i in range(200)]
        missions = await _submit_all(stack, requests)
        assert len({mission.id for mission in missions}) == 200
        seen: dict[str, list[events_pb2.MissionEvent]] = defaultdict(list)
        async for event in drain(live, [mission.id for mission in missions]):
            seen[event.mission_id].append(event)

    for request, mission in zip(requests, missions, strict=True):
        final = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
        assert final.state == M.MISSION_STATE_SUCCEEDED
        assert final.result == request.payload
        events = seen[mission.id]
        assert [event.type for event in events] == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]
        sequences = [event.sequence for event in events]
        assert sequences == sorted(sequences) and len(set(sequences)) == 3
    all_sequences = [event.sequence for events in seen.values() for event in events]
    assert len(all_sequences) == len(set(all_sequences)), "a sequence was delivered twice"


async def test_a_batch_of_missions_runs_like_single_submissions(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker("--concurrency", "8")
    requests = [pb.SubmitMissionRequest(type="echo", payload=payload(n=i)) for i in range(100)]
    requests.insert(50, pb.SubmitMissionRequest(type="echo", max_attempts=-1))
    response = await stack.stub.SubmitMissions(pb.SubmitMissionsRequest(missions=requests), timeout=30)
    rejected = response.results.pop(50)
    assert rejected.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and rejected.error.field == "max_attempts"
    missions = [result.mission for result in response.results]
    assert [mission.payload for mission in missions] == [
        request.payload for request in requests if request.max_attempts == 0
    ]
    watch = pb.WatchEventsRequest(mission_ids=[mission.id for mission in missions])
    async with asyncio.timeout(60):  # ends once every mission is final
        finals = [event async for event in watch_events(stack.stub, watch) if event.type == E.EVENT_TYPE_COMPLETED]
    assert {event.mission_id for event in finals} == {mission.id for mission in missions}
    stats = await stack.stub.GetStats(pb.GetStatsRequest())
    assert stats.events_read == 300  # created, started, completed each
    # 100 concurrent CREATEDs and 8 attempts at a time: they shared records (group commit).
    assert stats.records_read < stats.events_read


async def test_retry_then_success_with_bounded_backoff(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker("--retry-base", "0.2", "--retry-max", "0.5")
    mission = (
        await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="fail", payload=payload(fail_times=2)))
    ).mission
    events = [event async for event in watch_events(stack.stub, pb.WatchEventsRequest(mission_ids=[mission.id]))]
    retries = [event for event in events if event.type == E.EVENT_TYPE_RETRYING]
    assert len(retries) == 2
    for retry in retries:
        bound = backoff_bound(retry.attempt, _seconds(0.2), _seconds(0.5))
        delay = retry.retrying.delay.ToTimedelta()
        assert _seconds(0) <= delay <= bound
        assert retry.retrying.next_attempt_time.ToDatetime() - retry.time.ToDatetime() == delay
    assert [retry.attempt for retry in retries] == [1, 2]
    assert events[-1].type == E.EVENT_TYPE_COMPLETED and events[-1].attempt == 3
    final = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
    assert final.state == M.MISSION_STATE_SUCCEEDED
    assert final.attempt == 3


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


async def test_exhausted_attempts_dead_letter(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker("--retry-base", "0.05", "--retry-max", "0.1")
    mission = (
        await stack.stub.SubmitMission(
            pb.SubmitMissionRequest(type="fail", payload=payload(fail_times=10, message="boom"), max_attempts=2)
        )
    ).mission
    events = [event async for event in watch_events(stack.stub, pb.WatchEventsRequest(mission_ids=[mission.id]))]
    assert [event.type for event in events] == [
        E.EVENT_TYPE_CREATED,
        E.EVENT_TYPE_STARTED,
        E.EVENT_TYPE_FAILED,
        E.EVENT_TYPE_RETRYING,
        E.EVENT_TYPE_STARTED,
        E.EVENT_TYPE_FAILED,
        E.EVENT_TYPE_DEAD_LETTERED,
    ]
    assert events[-2].failed.will_retry is False
    assert events[-1].dead_lettered.last_error.message == "boom"
    final = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
    assert final.state == M.MISSION_STATE_FAILED
    assert final.error.message == "boom"

    # A dead letter, listed with its payload, and nowhere else: ns.dead holds only
    # messages that could not be read, so GetStats' two counts agree with the list.
    listed = await stack.stub.ListDeadLetters(pb.ListDeadLettersRequest())
    assert [(dead.id, dead.payload) for dead in listed.missions] == [(mission.id, mission.payload)]
    stats = await stack.stub.GetStats(pb.GetStatsRequest())
    assert (stats.dead_letter_depth, stats.unreadable_messages) == (1, 0)


async def test_critical_mission_overtakes_a_normal_backlog(stack: Stack) -> None:
    await stack.start_service()
    backlog = await _submit_all(stack, [pb.SubmitMissionRequest(type="noop") for _ in range(20)], clients=1)
    critical = (
        await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="noop", priority=M.PRIORITY_CRITICAL))
    ).mission
    # The backlog is queued before any worker exists; one worker then takes one at a time.
    stack.start_worker("--concurrency", "1")
    request = pb.WatchEventsRequest(types=[E.EVENT_TYPE_STARTED], after_sequence=critical.last_sequence)
    async with watching(stack.stub, request) as started:
        first = await asyncio.wait_for(started.get(), 30)
    assert first.mission_id == critical.id
    assert critical.id not in {mission.id for mission in backlog}
