"""projection.apply: the mission state machine as a fold over its events."""

from __future__ import annotations

from collections.abc import Iterable

from mission_service.projection import apply, is_duplicate
from missions.v1 import events_pb2, mission_pb2
from tests.unit.factories import EventLog, struct, time_of

M = mission_pb2


def _fold(events: Iterable[events_pb2.MissionEvent]) -> M.Mission | None:
    mission: M.Mission | None = None
    for event in events:
        mission = apply(mission, event)
    return mission


def _states(events: list[events_pb2.MissionEvent]) -> list[int]:
    states: list[int] = []
    mission: M.Mission | None = None
    for event in events:
        mission = apply(mission, event)
        assert mission is not None
        states.append(mission.state)
    return states


def test_created_makes_a_queued_mission_from_the_submitted_one() -> None:
    log = EventLog()
    event = log.created("m1", "report", payload=struct(n=1), labels={"team": "ops"})
    mission = apply(None, event)
    assert mission is not None
    assert (mission.id, mission.type, mission.state) == ("m1", "report", M.MISSION_STATE_QUEUED)
    assert mission.payload == struct(n=1)
    assert dict(mission.labels) == {"team": "ops"}
    assert mission.last_sequence == 1
    assert mission.update_time == time_of(1)
    assert mission.attempt == 0


def test_apply_does_not_modify_its_input() -> None:
    log = EventLog()
    queued = apply(None, log.created("m1"))
    assert queued is not None
    running = apply(queued, log.started("m1"))
    assert running is not None
    assert queued.state == M.MISSION_STATE_QUEUED
    assert running.state == M.MISSION_STATE_RUNNING


def test_success_life_cycle() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1, worker_id="w-7")
    log.progress("m1", 0.5, "half way")
    log.completed("m1", answer=42)
    assert _states(log.events) == [
        M.MISSION_STATE_QUEUED,
        M.MISSION_STATE_RUNNING,
        M.MISSION_STATE_RUNNING,
        M.MISSION_STATE_SUCCEEDED,
    ]
    mission = _fold(log.events)
    assert mission is not None
    assert mission.attempt == 1
    assert mission.worker_id == "w-7"
    assert mission.start_time == time_of(2)
    assert mission.end_time == time_of(4)
    assert mission.result == struct(answer=42)
    assert mission.progress == 1.0
    assert mission.last_sequence == 4
    assert not mission.HasField("error")


def test_progress_is_recorded_while_running() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1")
    log.progress("m1", 0.25, "a quarter")
    mission = _fold(log.events)
    assert mission is not None
    assert (mission.progress, mission.progress_message) == (0.25, "a quarter")


def test_failure_then_retry_then_second_attempt() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    log.progress("m1", 0.5, "half")
    log.failed("m1", will_retry=True, error_type="ValueError")
    log.retrying("m1", delay_ms=800)
    log.started("m1", attempt=2, worker_id="w-2")
    assert _states(log.events) == [
        M.MISSION_STATE_QUEUED,
        M.MISSION_STATE_RUNNING,
        M.MISSION_STATE_RUNNING,
        M.MISSION_STATE_RUNNING,  # a failed attempt that will be retried is not terminal
        M.MISSION_STATE_RETRYING,
        M.MISSION_STATE_RUNNING,
    ]
    mission = _fold(log.events)
    assert mission is not None
    assert mission.attempt == 2
    assert mission.worker_id == "w-2"
    assert mission.start_time == time_of(6)
    # A new attempt starts from scratch, but the last error stays visible.
    assert (mission.progress, mission.progress_message) == (0.0, "")
    assert mission.error.type == "ValueError"
    assert not mission.HasField("end_time")


def test_the_end_of_an_attempt_logged_after_the_next_attempt_started_changes_nothing() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=True, error_type="WorkerLost")
    retrying = log.retrying("m1", delay_ms=0, error_type="WorkerLost")
    started = log.started("m1", attempt=2, worker_id="w-2")
    # RETRYING reached the work queue and the log in one publish; the retry's STARTED won.
    # Then a worker that had been declared lost reports attempt 1 failed, late.
    late = log.failed("m1", will_retry=False, error_type="ValueError")
    late.attempt = 1
    events = [*log.events[:3], started, retrying, late]
    assert _states(events)[-3:] == [M.MISSION_STATE_RUNNING] * 3
    mission = _fold(events)
    assert mission is not None
    assert (mission.attempt, mission.worker_id, mission.error.type) == (2, "w-2", "WorkerLost")


def test_final_failure_then_dead_lettered() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=False, error_type="NonRetryableError", message="bad input")
    log.dead_lettered("m1", error_type="SomethingElse")
    assert _states(log.events) == [
        M.MISSION_STATE_QUEUED,
        M.MISSION_STATE_RUNNING,
        M.MISSION_STATE_FAILED,
        M.MISSION_STATE_FAILED,
    ]
    mission = _fold(log.events)
    assert mission is not None
    assert mission.error == M.MissionError(type="NonRetryableError", message="bad input", retryable=False)
    assert mission.end_time == time_of(3)
    assert mission.last_sequence == 4


def test_dead_lettered_without_a_final_failure_fails_the_mission() -> None:
    log = EventLog()
    log.created("m1")
    log.dead_lettered("m1", error_type="UnknownMissionType")
    mission = _fold(log.events)
    assert mission is not None
    assert mission.state == M.MISSION_STATE_FAILED
    assert mission.error.type == "UnknownMissionType"
    assert mission.end_time == time_of(2)


def test_cancelled_is_terminal() -> None:
    log = EventLog()
    log.created("m1")
    log.cancelled("m1")
    mission = _fold(log.events)
    assert mission is not None
    assert mission.state == M.MISSION_STATE_CANCELLED
    assert mission.end_time == time_of(2)


def test_terminal_states_absorb_late_events_but_advance_last_sequence() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1, worker_id="w-1")
    log.completed("m1", answer=1)
    done = _fold(log.events)
    assert done is not None
    # A redelivered attempt after success, then stray events.
    late = [
        log.started("m1", attempt=2, worker_id="w-2"),
        log.progress("m1", 0.3),
        log.failed("m1", will_retry=False),
        log.cancelled("m1"),
        log.dead_lettered("m1"),
    ]
    mission = done
    for event in late:
        after = apply(mission, event)
        assert after is not None
        assert after.last_sequence == event.sequence
        assert after.update_time == event.time
        mission = after
    expected = M.Mission()
    expected.CopyFrom(done)
    expected.last_sequence = late[-1].sequence
    expected.update_time.CopyFrom(late[-1].time)
    assert mission == expected


def test_cancelled_mission_ignores_a_later_completion() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1")
    log.cancelled("m1")
    log.completed("m1", answer=1)
    mission = _fold(log.events)
    assert mission is not None
    assert mission.state == M.MISSION_STATE_CANCELLED
    assert not mission.HasField("result")
    assert mission.last_sequence == 4


def test_event_for_an_unknown_mission_applies_to_nothing() -> None:
    log = EventLog()
    for event in (log.started("ghost"), log.completed("ghost"), log.dead_lettered("ghost")):
        assert apply(None, event) is None


def test_duplicate_created_keeps_the_original() -> None:
    first = EventLog()
    first.created("m1", "echo", payload=struct(n=1))
    first.started("m1")
    original = _fold(first.events)
    assert original is not None
    second = EventLog(start=first.sequence)
    duplicate = second.created("m1", "sleep", payload=struct(n=2))
    mission = apply(original, duplicate)
    assert mission is not None
    assert (mission.type, mission.state, mission.payload) == ("echo", M.MISSION_STATE_RUNNING, struct(n=1))
    assert mission.create_time == original.create_time
    assert mission.last_sequence == duplicate.sequence


def _dead_lettered_log() -> EventLog:
    log = EventLog()
    log.created("m1", max_attempts=2)
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=True)
    log.retrying("m1")
    log.started("m1", attempt=2)
    log.progress("m1", 0.7, "most")
    log.failed("m1", will_retry=False, error_type="ValueError")
    log.dead_lettered("m1")
    return log


def test_started_records_the_worker_session() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1, worker_id="w-1", session="session-a")
    mission = _fold(log.events)
    assert mission is not None
    assert (mission.worker_id, mission.worker_session) == ("w-1", "session-a")
    log.failed("m1", will_retry=True)
    log.retrying("m1")
    log.started("m1", attempt=2, worker_id="w-1", session="session-b")  # the same worker, restarted
    mission = _fold(log.events)
    assert mission is not None
    assert (mission.attempt, mission.worker_session) == (2, "session-b")


def test_dead_lettered_after_a_final_failure_marks_the_mission_dead_lettered() -> None:
    log = _dead_lettered_log()
    before = _fold(log.events[:-1])
    assert before is not None
    assert (before.state, before.dead_lettered) == (M.MISSION_STATE_FAILED, False)
    mission = _fold(log.events)
    assert mission is not None
    assert (mission.state, mission.dead_lettered) == (M.MISSION_STATE_FAILED, True)
    assert mission.end_time == time_of(7)  # the failure ended it, not the dead-lettering


def test_dead_lettered_without_a_final_failure_marks_the_mission_dead_lettered() -> None:
    log = EventLog()
    log.created("m1")
    log.dead_lettered("m1")
    mission = _fold(log.events)
    assert mission is not None
    assert mission.dead_lettered


def test_dead_lettered_does_not_touch_a_succeeded_or_cancelled_mission() -> None:
    for last in ("completed", "cancelled"):
        log = EventLog()
        log.created("m1")
        log.started("m1")
        getattr(log, last)("m1")
        log.dead_lettered("m1")
        mission = _fold(log.events)
        assert mission is not None
        assert not mission.dead_lettered, last
        assert mission.state != M.MISSION_STATE_FAILED, last


def test_redriven_starts_a_dead_lettered_mission_over() -> None:
    log = _dead_lettered_log()
    log.redriven("m1", max_attempts=5, requested_by="ops")
    mission = _fold(log.events)
    assert mission is not None
    assert mission.state == M.MISSION_STATE_QUEUED
    assert (mission.attempt, mission.max_attempts, mission.redrive_count) == (0, 5, 1)
    assert not mission.dead_lettered
    assert (mission.progress, mission.progress_message) == (0.0, "")
    for name in ("end_time", "start_time", "result"):
        assert not mission.HasField(name), name
    assert mission.last_sequence == 9
    # What the mission is stays the same.
    assert (mission.id, mission.type, mission.create_time) == ("m1", "echo", time_of(1))


def test_a_redriven_mission_runs_through_a_second_life() -> None:
    log = _dead_lettered_log()
    log.redriven("m1", max_attempts=1)
    log.started("m1", attempt=1, worker_id="w-9", session="s-9")
    log.completed("m1", answer=7)
    states = _states(log.events)
    assert states[-3:] == [M.MISSION_STATE_QUEUED, M.MISSION_STATE_RUNNING, M.MISSION_STATE_SUCCEEDED]
    mission = _fold(log.events)
    assert mission is not None
    assert (mission.attempt, mission.redrive_count, mission.worker_session) == (1, 1, "s-9")
    assert mission.result == struct(answer=7)
    assert mission.end_time == time_of(11)


def test_a_second_redrive_after_a_second_dead_letter() -> None:
    log = _dead_lettered_log()
    log.redriven("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=False)
    log.dead_lettered("m1")
    log.redriven("m1", max_attempts=4)
    mission = _fold(log.events)
    assert mission is not None
    assert (mission.state, mission.redrive_count, mission.max_attempts) == (M.MISSION_STATE_QUEUED, 2, 4)


def test_redriven_is_ignored_unless_the_mission_is_dead_lettered() -> None:
    cases = {
        "queued": ["created"],
        "running": ["created", "started"],
        "succeeded": ["created", "started", "completed"],
        "cancelled": ["created", "cancelled"],
    }
    for name, steps in cases.items():
        log = EventLog()
        for step in steps:
            getattr(log, step)("m1")
        before = _fold(log.events)
        assert before is not None
        redriven = log.redriven("m1", max_attempts=9)
        mission = apply(before, redriven)
        expected = M.Mission()
        expected.CopyFrom(before)
        expected.last_sequence = redriven.sequence
        expected.update_time.CopyFrom(redriven.time)
        assert mission == expected, name


def test_redriven_is_ignored_for_a_failed_mission_not_yet_dead_lettered() -> None:
    log = _dead_lettered_log()
    before = _fold(log.events[:-1])  # FAILED, its DEAD_LETTERED not applied yet
    assert before is not None
    mission = apply(before, log.redriven("m1"))
    assert mission is not None
    assert (mission.state, mission.redrive_count, mission.attempt) == (M.MISSION_STATE_FAILED, 0, 2)


def _running(log: EventLog) -> M.Mission:
    """m1 running its first attempt on worker-1."""
    log.created("m1")
    log.started("m1", attempt=1, worker_id="worker-1", session="s-1")
    mission = _fold(log.events)
    assert mission is not None
    return mission


def _withdrawn(event: events_pb2.MissionEvent) -> events_pb2.MissionEvent:
    event.started.withdrawn = True
    return event


def test_no_event_of_an_unknown_mission_is_a_duplicate() -> None:
    log = EventLog()
    for event in (log.created("m1"), log.started("m1"), _withdrawn(log.started("m1")), log.redriven("m1")):
        assert not is_duplicate(None, event), event.type


def test_a_second_created_of_an_existing_mission_is_a_duplicate() -> None:
    log = EventLog()
    mission = apply(None, log.created("m1"))
    assert is_duplicate(mission, log.created("m1"))


def test_a_redriven_is_a_duplicate_unless_the_mission_is_dead_lettered() -> None:
    log = _dead_lettered_log()
    failed = _fold(log.events[:-1])  # FAILED, its DEAD_LETTERED not applied yet
    dead = _fold(log.events)
    redriven = log.redriven("m1")
    assert is_duplicate(failed, redriven)
    assert not is_duplicate(dead, redriven)
    assert is_duplicate(apply(dead, redriven), log.redriven("m1"))  # a concurrent second redrive


def test_a_started_of_an_attempt_that_already_started_is_a_duplicate() -> None:
    log = EventLog()
    mission = _running(log)
    assert is_duplicate(mission, log.started("m1", attempt=1, worker_id="worker-2", session="s-2"))
    log.failed("m1", will_retry=True)
    log.retrying("m1")
    second = log.started("m1", attempt=2)
    assert not is_duplicate(_fold(log.events[:-1]), second)
    assert is_duplicate(_fold(log.events), log.started("m1", attempt=1))  # a late copy of attempt 1


def test_the_first_started_of_an_attempt_is_not_a_duplicate() -> None:
    log = EventLog()
    queued = apply(None, log.created("m1"))
    assert not is_duplicate(queued, log.started("m1", attempt=1))


def test_a_started_of_an_older_generation_is_a_duplicate() -> None:
    log = _dead_lettered_log()
    log.redriven("m1")
    redriven = _fold(log.events)
    assert redriven is not None
    assert (redriven.attempt, redriven.redrive_count) == (0, 1)
    late = log.started("m1", attempt=1)
    assert not is_duplicate(redriven, late)
    late.generation = 0  # a copy of the old generation's work message
    assert is_duplicate(redriven, late)


def test_a_withdrawn_started_is_a_duplicate_even_of_an_attempt_not_started_yet() -> None:
    log = EventLog()
    queued = apply(None, log.created("m1"))
    assert is_duplicate(queued, _withdrawn(log.started("m1", attempt=1)))
    log = EventLog()
    running = _running(log)
    assert is_duplicate(running, _withdrawn(log.started("m1", attempt=1, worker_id="worker-1", session="s-1")))


def test_other_events_of_a_known_mission_are_not_duplicates() -> None:
    log = EventLog()
    mission = _running(log)
    for event in (
        log.progress("m1", 0.5),
        log.failed("m1", will_retry=True),
        log.retrying("m1"),
        log.completed("m1"),
        log.cancelled("m1"),
        log.dead_lettered("m1"),
    ):
        assert not is_duplicate(mission, event), event.type


def test_a_mission_due_after_its_creation_is_scheduled_until_due_then_queued() -> None:
    log = EventLog()
    log.scheduled("m1", due_in=10)
    log.due("m1")
    log.started("m1")
    assert _states(log.events) == [M.MISSION_STATE_SCHEDULED, M.MISSION_STATE_QUEUED, M.MISSION_STATE_RUNNING]


def test_a_mission_due_at_or_before_its_creation_is_queued_at_once() -> None:
    log = EventLog()
    created = log.scheduled("m1", due_in=0)
    mission = apply(None, created)
    assert mission is not None
    assert mission.state == M.MISSION_STATE_QUEUED
    assert mission.due_time == created.created.mission.due_time


def test_a_second_due_is_a_duplicate_that_changes_nothing() -> None:
    log = EventLog()
    scheduled = apply(None, log.scheduled("m1"))
    queued = apply(scheduled, log.due("m1"))
    second = log.due("m1")
    assert not is_duplicate(scheduled, log.events[1])
    assert is_duplicate(queued, second)


def test_a_scheduled_mission_can_be_cancelled_and_a_late_due_is_then_a_duplicate() -> None:
    log = EventLog()
    log.scheduled("m1")
    log.cancelled("m1")
    cancelled = _fold(log.events)
    assert cancelled is not None
    assert cancelled.state == M.MISSION_STATE_CANCELLED
    assert is_duplicate(cancelled, log.due("m1"))
