"""End to end: delayed missions wait SCHEDULED, fire once at their due time (across a
restart of the service while they wait), can be cancelled, and bad schedules are refused."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Stack, watch_events
from tests.unit.service_harness import violated_fields

pytestmark = pytest.mark.e2e

E = events_pb2
M = mission_pb2

# Generous: the service restarts in between, on a machine other tests load too.
_LATE_S = 5.0


def _at(seconds_from_now: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int((time.time() + seconds_from_now) * 1e9))
    return stamp


async def _submit(stack: Stack, **fields: Any) -> M.Mission:
    request = pb.SubmitMissionRequest(type="echo", **fields)
    mission = (await stack.stub.SubmitMission(request, timeout=30)).mission
    assert isinstance(mission, M.Mission)
    return mission


async def _events_to_the_end(stack: Stack, missions: list[M.Mission]) -> dict[str, list[events_pb2.MissionEvent]]:
    """Every event each mission emitted, from its CREATED to its final event."""
    found: dict[str, list[events_pb2.MissionEvent]] = {mission.id: [] for mission in missions}
    request = pb.WatchEventsRequest(mission_ids=list(found))
    async for event in watch_events(stack.stub, request):  # ends once every mission is final
        found[event.mission_id].append(event)
    return found


async def test_delayed_missions_fire_once_at_their_due_time_across_a_service_restart(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    missions = [await _submit(stack, due_time=_at(4)) for _ in range(5)]
    assert {mission.state for mission in missions} == {M.MISSION_STATE_SCHEDULED}

    assert stack.service is not None and stack.service.stop() == 0
    await stack.start_service()

    lateness = []
    for mission in missions:
        got = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id), timeout=30)).mission
        assert got.due_time == mission.due_time
    events = await _events_to_the_end(stack, missions)
    for mission in missions:
        kinds = [event.type for event in events[mission.id]]
        assert kinds == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_DUE, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]
        started = events[mission.id][2]
        late = (started.time.ToNanoseconds() - mission.due_time.ToNanoseconds()) / 1e9
        assert 0 <= late < _LATE_S, f"mission {mission.id} started {late:.3f} s after its due time"
        lateness.append(late)
    print(f"started after the due time: {min(lateness):.3f} s to {max(lateness):.3f} s")


async def test_a_cancelled_scheduled_mission_never_runs(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    cancelled = await _submit(stack, delay=duration_pb2.Duration(seconds=2))
    await stack.stub.CancelMission(pb.CancelMissionRequest(mission_id=cancelled.id, reason="not needed"), timeout=30)
    # Due with it or after it: once this one has run, the cancelled one would have too.
    witness = await _submit(stack, due_time=cancelled.due_time)

    events = await _events_to_the_end(stack, [cancelled, witness])

    assert [event.type for event in events[cancelled.id]] == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_CANCELLED]
    assert events[cancelled.id][1].cancelled.previous_state == M.MISSION_STATE_SCHEDULED
    assert events[witness.id][-1].type == E.EVENT_TYPE_COMPLETED
    got = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=cancelled.id), timeout=30)).mission
    assert (got.state, got.attempt) == (M.MISSION_STATE_CANCELLED, 0)


async def test_a_due_time_in_the_past_runs_at_once(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    mission = await _submit(stack, due_time=_at(-3600))
    assert mission.state == M.MISSION_STATE_QUEUED

    events = await _events_to_the_end(stack, [mission])

    assert [event.type for event in events[mission.id]] == [
        E.EVENT_TYPE_CREATED,
        E.EVENT_TYPE_STARTED,
        E.EVENT_TYPE_COMPLETED,
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"due_time": timestamp_pb2.Timestamp(seconds=int(time.time()) + 2 * 365 * 86_400)}, "due_time"),
        ({"delay": duration_pb2.Duration(seconds=-5)}, "delay"),
    ],
)
async def test_a_bad_schedule_is_invalid_argument_naming_the_field(
    stack: Stack, fields: dict[str, Any], field: str
) -> None:
    await stack.start_service()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _submit(stack, **fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")
    assert violated_fields(raised.value) == [field]
