"""End to end: recurring schedules fire once per firing time across a restart of the service,
catch up once for the times missed while it was down, stop while paused or deleted, and skip
a firing while the previous mission still runs. Every check is computed from the events the
schedule left in the log (its own firing times), never from the wall clock of the test."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence

import grpc
import pytest
from google.protobuf import duration_pb2

from mission_service.schedules import SCHEDULE_LABEL
from missions.client import schedule_request
from missions.events import SCHEDULE_EVENT_TYPES
from missions.v1 import events_pb2, mission_pb2, schedule_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Stack, eventually, watch_events
from tests.unit.service_harness import violated_fields

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

E = events_pb2
S = schedule_pb2
_SECOND = 1_000_000_000

Events = list[events_pb2.MissionEvent]


async def _create(stack: Stack, schedule_id: str, interval_s: int, overlap: str = "skip") -> S.Schedule:
    request = schedule_request(
        "echo", {"from": schedule_id}, schedule_id=schedule_id, interval=interval_s, overlap=overlap
    )
    schedule = (await stack.stub.CreateSchedule(request, timeout=30)).schedule
    assert isinstance(schedule, S.Schedule)
    return schedule


async def _log_until(stack: Stack, done: Callable[[dict[str, Events]], bool], timeout: float = 60) -> dict[str, Events]:
    """The events of every schedule in the log, by schedule id, from the start, once ``done`` holds."""
    found: dict[str, Events] = {}
    request = pb.WatchEventsRequest(types=sorted(SCHEDULE_EVENT_TYPES), after_sequence=0)
    async with asyncio.timeout(timeout):
        async for event in watch_events(stack.stub, request):
            found.setdefault(event.schedule_id, []).append(event)
            if done(found):
                return found
    raise AssertionError("the watch ended")


def _fired(events: Sequence[events_pb2.MissionEvent]) -> Events:
    return [event for event in events if event.type == E.EVENT_TYPE_SCHEDULE_FIRED]


def _of_type(kind: int) -> Callable[[Events], Events]:
    return lambda events: [event for event in events if event.type == kind]


async def _missions_of(stack: Stack, schedule_id: str) -> list[mission_pb2.Mission]:
    request = pb.ListMissionsRequest(label_selector=f"{SCHEDULE_LABEL}={schedule_id}", page_size=1000)
    return list((await stack.stub.ListMissions(request, timeout=30)).missions)


async def test_an_interval_schedule_fires_once_per_firing_time_across_a_restart(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    schedule = await _create(stack, "every-2s", 2, overlap="allow")
    created = schedule.create_time.ToNanoseconds()

    first = _fired((await _log_until(stack, lambda log: len(_fired(log.get("every-2s", []))) >= 2))["every-2s"])
    due = (await stack.stub.GetSchedule(pb.GetScheduleRequest(schedule_id="every-2s"), timeout=30)).schedule
    assert stack.service is not None and stack.service.stop() == 0
    # Down for at least two more firing times: those are missed, and caught up once.
    missed_until: int = due.next_fire_time.ToNanoseconds() + 2 * 2 * _SECOND

    async def missed() -> bool:
        return time.time_ns() > missed_until

    await eventually(missed, "two firing times missed")
    await stack.start_service()

    def fired_after_restart(log: dict[str, Events]) -> bool:
        # The restarted process names itself differently in `source` (its pid).
        return sum(event.source != first[0].source for event in _fired(log.get("every-2s", []))) >= 3

    await _log_until(stack, fired_after_restart)
    await stack.stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id="every-2s"), timeout=30)
    log = await _log_until(stack, lambda log: any(_of_type(E.EVENT_TYPE_SCHEDULE_DELETED)(log.get("every-2s", []))))

    fired = _fired(log["every-2s"])
    times = [event.schedule_fired.fire_time.ToNanoseconds() for event in fired]
    assert all(event.schedule_fired.mission_id for event in fired), "overlap allowed: nothing skipped"
    # Each firing time on the 2 s grid from the creation, once, in order.
    assert times == sorted(set(times))
    assert all((time - created) % (2 * _SECOND) == 0 for time in times)
    steps = [(later - earlier) // (2 * _SECOND) for earlier, later in itertools.pairwise(times)]
    # Every step is one interval, except one across the restart: the times missed meanwhile
    # got one firing, for the latest of them (it fired less than an interval late).
    assert sum(step != 1 for step in steps) == 1 and max(steps) >= 3, steps
    for event in fired:
        late = event.time.ToNanoseconds() - event.schedule_fired.fire_time.ToNanoseconds()
        assert 0 <= late < 2 * _SECOND, f"fired {late / 1e9:.3f} s after its firing time"
    expected = (times[-1] - times[0]) // (2 * _SECOND) + 1 - sum(step - 1 for step in steps)
    # One mission per firing, no duplicate: what the log says fired is what exists.
    missions = await _missions_of(stack, "every-2s")
    assert len(missions) == len(fired) == expected
    assert {mission.id for mission in missions} == {event.schedule_fired.mission_id for event in fired}
    assert len({mission.idempotency_key for mission in missions}) == len(missions)
    print(f"{len(fired)} firings over {(times[-1] - times[0]) / 1e9:.0f} s, steps {steps}")


async def test_pause_stops_firing_resume_restarts_it_and_delete_ends_it(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    await _create(stack, "clock", 1, overlap="allow")  # a witness of time passing
    await _create(stack, "paused", 1, overlap="allow")

    def ticks_after(kind: int, schedule_id: str, count: int) -> Callable[[dict[str, Events]], bool]:
        """Once ``count`` firings of the clock come after the first ``kind`` event of ``schedule_id``."""

        def done(log: dict[str, Events]) -> bool:
            marks = _of_type(kind)(log.get(schedule_id, []))
            return bool(marks) and sum(e.sequence > marks[0].sequence for e in _fired(log.get("clock", []))) >= count

        return done

    await _log_until(stack, lambda log: len(_fired(log.get("paused", []))) >= 1)
    paused = (await stack.stub.PauseSchedule(pb.PauseScheduleRequest(schedule_id="paused"), timeout=30)).schedule
    assert paused.state == S.SCHEDULE_STATE_PAUSED and not paused.HasField("next_fire_time")
    await _log_until(stack, ticks_after(E.EVENT_TYPE_SCHEDULE_PAUSED, "paused", 3))
    resumed = (await stack.stub.ResumeSchedule(pb.ResumeScheduleRequest(schedule_id="paused"), timeout=30)).schedule
    assert resumed.state == S.SCHEDULE_STATE_ACTIVE and resumed.HasField("next_fire_time")

    def fired_after_resume(log: dict[str, Events]) -> bool:
        resumed_at = _of_type(E.EVENT_TYPE_SCHEDULE_RESUMED)(log.get("paused", []))
        return bool(resumed_at) and any(e.sequence > resumed_at[0].sequence for e in _fired(log["paused"]))

    await _log_until(stack, fired_after_resume)
    await stack.stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id="paused"), timeout=30)
    log = await _log_until(stack, ticks_after(E.EVENT_TYPE_SCHEDULE_DELETED, "paused", 3))

    events = log["paused"]
    pause, resume, delete = (
        _of_type(kind)(events)[0]
        for kind in (E.EVENT_TYPE_SCHEDULE_PAUSED, E.EVENT_TYPE_SCHEDULE_RESUMED, E.EVENT_TYPE_SCHEDULE_DELETED)
    )
    for event in _fired(events):
        fire_time = event.schedule_fired.fire_time.ToNanoseconds()
        # A firing that raced the pause may follow it in the log, but none is due while paused.
        assert not pause.time.ToNanoseconds() < fire_time <= resume.time.ToNanoseconds()
        assert event.sequence < delete.sequence
    assert [event.type for event in events if event.type != E.EVENT_TYPE_SCHEDULE_FIRED] == [
        E.EVENT_TYPE_SCHEDULE_CREATED,
        E.EVENT_TYPE_SCHEDULE_PAUSED,
        E.EVENT_TYPE_SCHEDULE_RESUMED,
        E.EVENT_TYPE_SCHEDULE_DELETED,
    ]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stack.stub.GetSchedule(pb.GetScheduleRequest(schedule_id="paused"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    listed = (await stack.stub.ListSchedules(pb.ListSchedulesRequest(), timeout=30)).schedules
    assert [schedule.id for schedule in listed] == ["clock"]


async def test_overlap_skip_skips_firings_while_the_previous_mission_runs(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    request = schedule_request("sleep", {"seconds": 4}, schedule_id="long", interval=1)
    await stack.stub.CreateSchedule(request, timeout=30)

    def skipped_then_fired(log: dict[str, Events]) -> bool:
        outcomes = [bool(event.schedule_fired.mission_id) for event in _fired(log.get("long", []))]
        return outcomes[:1] == [True] and False in outcomes and outcomes[outcomes.index(False) :].count(True) >= 1

    log = await _log_until(stack, skipped_then_fired)
    await stack.stub.DeleteSchedule(pb.DeleteScheduleRequest(schedule_id="long"), timeout=30)

    fired = _fired(log["long"])
    running = None
    for event in fired:
        if event.schedule_fired.mission_id:
            running = (
                await stack.stub.GetMission(
                    pb.GetMissionRequest(mission_id=event.schedule_fired.mission_id), timeout=30
                )
            ).mission
            continue
        assert event.schedule_fired.skip_reason == E.SKIP_REASON_OVERLAP
        assert running is not None
        # Skipped only while the previous mission had not ended.
        assert not running.HasField("end_time") or event.time.ToNanoseconds() < running.end_time.ToNanoseconds()
    assert sum(not event.schedule_fired.mission_id for event in fired) >= 2  # 4 s of work, 1 s apart


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (S.Schedule(cron="61 * * * *"), "schedule.cron"),
        (S.Schedule(cron="* * * *"), "schedule.cron"),
        (S.Schedule(cron="0 9 * * *", time_zone="Mars/Olympus"), "schedule.time_zone"),
        (S.Schedule(interval=duration_pb2.Duration(nanos=5)), "schedule.interval"),
        (S.Schedule(), "schedule.cron"),
    ],
)
async def test_a_bad_schedule_is_invalid_argument_naming_the_field(
    stack: Stack, schedule: S.Schedule, field: str
) -> None:
    await stack.start_service()
    schedule.mission_template.type = "echo"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stack.stub.CreateSchedule(pb.CreateScheduleRequest(schedule=schedule), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == [field]
