"""Recurring schedules without a broker: firing times (cron in a time zone across DST, intervals),
the firing plan (catch-up and overlap policies on a fake clock), the projection and store, the
RPCs over the faked broker, and the readers that must pass schedule events by."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import duration_pb2

from mission_service.filters import EventFilter
from mission_service.limits import Limits
from mission_service.recurrence import recurrence, timestamp
from mission_service.schedules import SCHEDULE_LABEL, Schedules, plan
from mission_service.store import MissionStore
from missions import codec
from missions.client import schedule_request
from missions.errors import DecodeError
from missions.v1 import events_pb2, mission_pb2, schedule_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.unit.service_harness import TIMEOUT, running_service, violated_fields

E = events_pb2
M = mission_pb2
S = schedule_pb2
_SECOND = 1_000_000_000


def _ns(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * _SECOND


def _utc(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, UTC)


def _every(seconds: int, created: int = 0) -> S.Schedule:
    return S.Schedule(id="s", interval=duration_pb2.Duration(seconds=seconds), create_time=timestamp(created))


def test_interval_firings_count_from_the_creation() -> None:
    every = recurrence(_every(2, created=10 * _SECOND))
    assert every.next_after(10 * _SECOND) == 12 * _SECOND
    assert every.next_after(13 * _SECOND) == 14 * _SECOND
    assert every.latest_until(11 * _SECOND) is None
    assert every.latest_until(17 * _SECOND) == 16 * _SECOND


def test_cron_in_a_time_zone_across_daylight_saving_changes() -> None:
    nightly = recurrence(S.Schedule(cron="30 2 * * *", time_zone="Europe/Berlin"))
    # 2025-03-30: 02:30 does not exist in Berlin; it fires at 03:00 CEST (01:00 UTC).
    spring = [nightly.next_after(_ns(2025, 3, 29, 12))]
    spring += [nightly.next_after(spring[-1])]
    assert [_utc(t) for t in spring] == [datetime(2025, 3, 30, 1, tzinfo=UTC), datetime(2025, 3, 31, 0, 30, tzinfo=UTC)]
    # 2025-10-26: 02:30 happens twice; it fires once (the first, CEST), then 02:30 CET.
    autumn = [nightly.next_after(_ns(2025, 10, 25, 12))]
    autumn += [nightly.next_after(autumn[-1])]
    assert [_utc(t) for t in autumn] == [
        datetime(2025, 10, 26, 0, 30, tzinfo=UTC),
        datetime(2025, 10, 27, 1, 30, tzinfo=UTC),
    ]
    assert nightly.latest_until(_ns(2025, 10, 27, 1, 30)) == _ns(2025, 10, 27, 1, 30)
    assert nightly.latest_until(_ns(2025, 10, 27, 1, 29)) == _ns(2025, 10, 26, 0, 30)


def _due(schedule: S.Schedule, next_fire: int, **policies: int) -> S.Schedule:
    due = S.Schedule()
    due.CopyFrom(schedule)
    due.next_fire_time.CopyFrom(timestamp(next_fire))
    for name, value in policies.items():
        setattr(due, name, value)
    return due


def test_catch_up_one_fires_the_latest_missed_time_once() -> None:
    schedule = _due(_every(2), 10 * _SECOND, catch_up_policy=S.CATCH_UP_POLICY_ONE)
    assert plan(schedule, 10 * _SECOND, None) == plan(schedule, 10 * _SECOND + 1, None)
    firing = plan(schedule, 101 * _SECOND, None)  # down from 10 s to 101 s
    assert (firing.fire_time, firing.skip_reason) == (100 * _SECOND, E.SKIP_REASON_UNSPECIFIED)


def test_catch_up_skip_skips_a_late_firing_and_fires_one_on_time() -> None:
    schedule = _due(_every(60), 60 * _SECOND, catch_up_policy=S.CATCH_UP_POLICY_SKIP)
    assert plan(schedule, 61 * _SECOND, None).skip_reason == E.SKIP_REASON_UNSPECIFIED
    late = plan(schedule, 315 * _SECOND, None)  # down from 60 s: 300 s is the latest missed, 15 s late
    assert (late.fire_time, late.skip_reason) == (300 * _SECOND, E.SKIP_REASON_MISSED)
    assert plan(schedule, 309 * _SECOND, None).skip_reason == E.SKIP_REASON_UNSPECIFIED  # 9 s late: on time


@pytest.mark.parametrize(
    ("policy", "previous", "skipped"),
    [
        (S.OVERLAP_POLICY_SKIP, M.MISSION_STATE_RUNNING, True),
        (S.OVERLAP_POLICY_SKIP, M.MISSION_STATE_QUEUED, True),
        (S.OVERLAP_POLICY_SKIP, M.MISSION_STATE_SUCCEEDED, False),
        (S.OVERLAP_POLICY_ALLOW, M.MISSION_STATE_RUNNING, False),
    ],
)
def test_overlap_policy(policy: int, previous: int, skipped: bool) -> None:
    schedule = _due(_every(2), 2 * _SECOND, overlap_policy=policy)
    firing = plan(schedule, 2 * _SECOND, M.Mission(state=previous))  # type: ignore[arg-type]
    assert firing.skip_reason == (E.SKIP_REASON_OVERLAP if skipped else E.SKIP_REASON_UNSPECIFIED)


def _event(kind: int, sequence: int, at: int, **details: object) -> E.MissionEvent:
    event = E.MissionEvent(id=f"e{sequence}", schedule_id="s", type=kind, sequence=sequence, time=timestamp(at))  # type: ignore[arg-type]
    for name, value in details.items():
        getattr(event, name).CopyFrom(value)
    return event


def _fired(sequence: int, fire_time: int, mission_id: str = "m") -> E.MissionEvent:
    event = _event(E.EVENT_TYPE_SCHEDULE_FIRED, sequence, fire_time)
    event.schedule_fired.fire_time.CopyFrom(timestamp(fire_time))
    event.schedule_fired.mission_id = mission_id
    return event


def test_the_store_projects_a_schedule_and_records_duplicates() -> None:
    schedule = _due(_every(2), 2 * _SECOND)
    created = _event(E.EVENT_TYPE_SCHEDULE_CREATED, 1000, 0, schedule_created=E.ScheduleCreatedEvent(schedule=schedule))
    with MissionStore(":memory:") as store:
        assert store.apply_batch([created]) == set()
        assert [s.id for s in store.schedules_due(2, 10)] == ["s"] and store.next_schedule_due(0) == 2.0
        again = _event(
            E.EVENT_TYPE_SCHEDULE_CREATED, 2000, 0, schedule_created=E.ScheduleCreatedEvent(schedule=schedule)
        )
        # Two replicas fire the same time: the second is a duplicate.
        assert store.apply_batch([again, _fired(3000, 2 * _SECOND), _fired(4000, 2 * _SECOND, "m2")]) == {2000, 4000}
        got = store.get_schedule("s")
        assert got is not None
        assert (got.fire_count, got.last_mission_id, got.next_fire_time.ToNanoseconds()) == (1, "m", 4 * _SECOND)
        paused = _event(E.EVENT_TYPE_SCHEDULE_PAUSED, 5000, 5 * _SECOND)
        assert store.apply_batch([paused, _event(E.EVENT_TYPE_SCHEDULE_PAUSED, 6000, 6 * _SECOND)]) == {6000}
        assert store.schedules_due(100, 10) == [] and not store.get_schedule("s").HasField("next_fire_time")  # type: ignore[union-attr]
        store.apply_batch([_event(E.EVENT_TYPE_SCHEDULE_RESUMED, 7000, 9 * _SECOND)])
        assert store.get_schedule("s").next_fire_time.ToNanoseconds() == 10 * _SECOND  # type: ignore[union-attr]
        assert store.apply_batch(
            [_event(E.EVENT_TYPE_SCHEDULE_DELETED, 8000, 9 * _SECOND), _fired(9000, 10 * _SECOND)]
        ) == {9000}
        assert store.get_schedule("s") is None and store.schedule_id_taken("s")
        assert store.list_schedules(0, 10).schedules == [] and store.schedules_due(100, 10) == []
        assert store.duplicates_after(0) == {2000, 4000, 6000, 9000}


def test_watch_filters_pass_schedule_events_only_to_who_asks_by_type() -> None:
    fired = _fired(1000, 0)
    fired.mission_type = "echo"
    assert not EventFilter().matches(fired)
    assert not EventFilter(mission_types=frozenset({"echo"})).matches(fired)
    assert EventFilter(types=frozenset({E.EVENT_TYPE_SCHEDULE_FIRED})).matches(fired)


def test_the_codec_wants_a_schedule_id_in_a_schedule_event() -> None:
    fired = _fired(0, 0)
    assert codec.decode_record(codec.encode(fired).body, {codec.SCHEMA_HEADER: 1}, codec.MESSAGE_TYPE) == [fired]
    fired.schedule_id = ""
    fired.mission_id = "m"
    with pytest.raises(DecodeError):
        codec.decode_record(codec.encode(fired).body, {codec.SCHEMA_HEADER: 1}, codec.MESSAGE_TYPE)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "61 * * * *"}, "schedule.cron"),
        ({"cron": "0 9 * * * *"}, "schedule.cron"),
        ({"cron": "0 9 * * *", "time_zone": "Nowhere/Land"}, "schedule.time_zone"),
        ({"interval": 0.5}, "schedule.interval"),
        ({"interval": 5, "cron": "* * * * *"}, "schedule.interval"),
        ({"interval": 5, "schedule_id": "Not_An_Id"}, "schedule_id"),
        ({"interval": 5, "labels": {"": "x"}}, "schedule.mission_template.labels"),
    ],
)
async def test_a_bad_schedule_is_invalid_argument_naming_the_field(change: dict[str, object], field: str) -> None:
    async with running_service() as service:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await service.stub.CreateSchedule(schedule_request("echo", **change), timeout=TIMEOUT)  # type: ignore[arg-type]
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(raised.value) == [field]


async def test_create_is_idempotent_per_id_and_firing_submits_one_mission_per_time() -> None:
    async with running_service() as service:
        request = schedule_request("echo", {"n": 1}, schedule_id="nightly", cron="0 3 * * *", time_zone="UTC")
        first = (await service.stub.CreateSchedule(request, timeout=TIMEOUT)).schedule
        assert (await service.stub.CreateSchedule(request, timeout=TIMEOUT)).schedule == first
        other = schedule_request("echo", {"n": 1}, schedule_id="nightly", cron="0 4 * * *")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await service.stub.CreateSchedule(other, timeout=TIMEOUT)
        assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS

        due = first.next_fire_time.ToNanoseconds()
        schedules = Schedules(service.commands, service.store, Limits(), "tests", clock=lambda: due + _SECOND)
        await schedules.fire(first)
        await schedules.fire(first)  # a second leader with the same view: the same mission, a duplicate FIRED
        fired = service.store.get_schedule("nightly")
        assert (
            fired is not None
            and fired.fire_count == 1
            and fired.next_fire_time.ToNanoseconds() == due + 86_400 * _SECOND
        )
        mission = service.store.get(fired.last_mission_id)
        assert mission is not None and mission.labels[SCHEDULE_LABEL] == "nightly"
        assert mission.idempotency_key == f"schedule:nightly:{first.next_fire_time.ToJsonString()}"
        listed = (await service.stub.ListMissions(pb.ListMissionsRequest(), timeout=TIMEOUT)).missions
        assert [m.id for m in listed] == [mission.id]

        # Overlap SKIP (the default) while that mission has not finished, then a firing once it has.
        later = Schedules(service.commands, service.store, Limits(), "tests", clock=lambda: due + 86_401 * _SECOND)
        await later.fire(fired)
        skipped = service.store.get_schedule("nightly")
        assert skipped is not None and (skipped.fire_count, skipped.skip_count) == (1, 1)
        await service.run_to_completion(mission)
        await Schedules(service.commands, service.store, Limits(), "tests", clock=lambda: due + 172_801 * _SECOND).fire(
            skipped
        )
        assert service.store.get_schedule("nightly").fire_count == 2  # type: ignore[union-attr]
