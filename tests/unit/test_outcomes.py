"""outcome_events: the events that record how an attempt ended."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.protobuf import timestamp_pb2

from missions.outcomes import Outcome, outcome_events
from missions.v1 import events_pb2, mission_pb2
from tests.unit.factories import struct, time_of

E = events_pb2
M = mission_pb2

RETRYABLE = M.MissionError(type="ValueError", message="boom", retryable=True)
FATAL = M.MissionError(type="NonRetryableError", message="bad input", retryable=False)


class Events:
    """An EventFactory that stamps every event with the same known time and records each kind."""

    def __init__(self, mission: M.Mission, time: timestamp_pb2.Timestamp) -> None:
        self.mission = mission
        self.time = time
        self.made: list[int] = []

    def __call__(self, kind: events_pb2.EventType.ValueType) -> events_pb2.MissionEvent:
        self.made.append(kind)
        return E.MissionEvent(
            id=f"e{len(self.made)}",
            mission_id=self.mission.id,
            type=kind,
            time=self.time,
            attempt=self.mission.attempt,
        )


class Backoff:
    """Returns a fixed delay and records the failed attempts it was asked about."""

    def __init__(self, delay: timedelta) -> None:
        self.delay = delay
        self.asked: list[int] = []

    def __call__(self, failed_attempt: int) -> timedelta:
        self.asked.append(failed_attempt)
        return self.delay


def _mission(attempt: int = 1, max_attempts: int = 3) -> M.Mission:
    return M.Mission(
        id="m1",
        type="echo",
        state=M.MISSION_STATE_RUNNING,
        attempt=attempt,
        max_attempts=max_attempts,
        priority=M.PRIORITY_HIGH,
        redrive_count=2,
        payload=struct(n=1),
    )


def _run(
    mission: M.Mission, outcome: Outcome, delay: timedelta = timedelta(seconds=2)
) -> tuple[list[events_pb2.MissionEvent], Backoff]:
    backoff = Backoff(delay)
    return outcome_events(mission, outcome, Events(mission, time_of(10)), backoff), backoff


def test_a_result_is_one_completed_event() -> None:
    events, backoff = _run(_mission(), Outcome(timedelta(milliseconds=1500), result=struct(answer=42)))
    [done] = events
    assert done.type == E.EVENT_TYPE_COMPLETED
    assert done.completed.result == struct(answer=42)
    assert done.completed.duration.ToTimedelta() == timedelta(milliseconds=1500)
    assert backoff.asked == []


def test_an_empty_result_still_completes() -> None:
    events, _ = _run(_mission(), Outcome(timedelta(0), result=struct()))
    assert [event.type for event in events] == [E.EVENT_TYPE_COMPLETED]


def test_a_retryable_error_with_attempts_left_is_failed_then_retrying() -> None:
    mission = _mission(attempt=2, max_attempts=3)
    events, backoff = _run(mission, Outcome(timedelta(seconds=3), error=RETRYABLE), delay=timedelta(seconds=7))
    failed, retry = events
    assert (failed.type, retry.type) == (E.EVENT_TYPE_FAILED, E.EVENT_TYPE_RETRYING)
    assert failed.failed.error == RETRYABLE
    assert failed.failed.will_retry
    assert failed.failed.duration.ToTimedelta() == timedelta(seconds=3)
    # The backoff is asked about the attempt that failed, and its answer is the delay.
    assert backoff.asked == [2]
    assert retry.retrying.delay.ToTimedelta() == timedelta(seconds=7)
    assert retry.retrying.next_attempt_time.ToDatetime() == time_of(10).ToDatetime() + timedelta(seconds=7)
    assert retry.retrying.error == RETRYABLE


def test_the_retry_snapshot_is_the_mission_retrying_with_its_error() -> None:
    mission = _mission(attempt=1)
    events, _ = _run(mission, Outcome(timedelta(0), error=RETRYABLE))
    snapshot = events[1].retrying.mission
    expected = M.Mission()
    expected.CopyFrom(mission)
    expected.state = M.MISSION_STATE_RETRYING
    expected.error.CopyFrom(RETRYABLE)
    # The work message asks for attempt + 1 of the same generation: attempt stays the failed one here.
    assert snapshot == expected
    assert mission.state == M.MISSION_STATE_RUNNING  # the input is not modified


def test_a_zero_delay_retry_is_due_at_once() -> None:
    events, _ = _run(_mission(), Outcome(timedelta(0), error=RETRYABLE), delay=timedelta(0))
    retry = events[1].retrying
    assert retry.delay.ToTimedelta() == timedelta(0)
    assert retry.next_attempt_time == time_of(10)


def test_a_non_retryable_error_is_failed_then_dead_lettered_at_once() -> None:
    mission = _mission(attempt=1, max_attempts=3)
    events, backoff = _run(mission, Outcome(timedelta(seconds=1), error=FATAL))
    failed, dead = events
    assert (failed.type, dead.type) == (E.EVENT_TYPE_FAILED, E.EVENT_TYPE_DEAD_LETTERED)
    assert not failed.failed.will_retry
    assert failed.failed.error == FATAL
    assert dead.dead_lettered.reason == "non-retryable error after attempt 1 of 3"
    assert dead.dead_lettered.last_error == FATAL
    assert backoff.asked == []


@pytest.mark.parametrize(("attempt", "max_attempts"), [(3, 3), (4, 3), (1, 1)])
def test_a_retryable_error_on_the_last_attempt_is_dead_lettered(attempt: int, max_attempts: int) -> None:
    mission = _mission(attempt=attempt, max_attempts=max_attempts)
    events, backoff = _run(mission, Outcome(timedelta(0), error=RETRYABLE))
    failed, dead = events
    assert not failed.failed.will_retry
    assert dead.type == E.EVENT_TYPE_DEAD_LETTERED
    assert dead.dead_lettered.reason == f"attempts exhausted after attempt {attempt} of {max_attempts}"
    assert backoff.asked == []


def test_the_dead_letter_snapshot_is_the_mission_failed_with_its_error() -> None:
    mission = _mission(attempt=3, max_attempts=3)
    events, _ = _run(mission, Outcome(timedelta(0), error=RETRYABLE))
    snapshot = events[1].dead_lettered.mission
    expected = M.Mission()
    expected.CopyFrom(mission)
    expected.state = M.MISSION_STATE_FAILED
    expected.error.CopyFrom(RETRYABLE)
    assert snapshot == expected
    assert snapshot.redrive_count == 2


def test_events_are_made_in_publishing_order() -> None:
    mission = _mission()
    factory = Events(mission, time_of(1))
    outcome_events(mission, Outcome(timedelta(0), error=RETRYABLE), factory, Backoff(timedelta(0)))
    assert factory.made == [E.EVENT_TYPE_FAILED, E.EVENT_TYPE_RETRYING]
