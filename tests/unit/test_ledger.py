"""MissionLedger: which work messages are taken and which attempts are over, per generation."""

from __future__ import annotations

import pytest

from missions.v1 import events_pb2, mission_pb2
from tests.unit.factories import EventLog
from worker_service.ledger import MissionLedger

M = mission_pb2


def _work(mission_id: str = "m1", attempt: int = 1, generation: int = 0) -> M.Mission:
    """The mission a work message asks to run: its new attempt and its generation."""
    return M.Mission(id=mission_id, type="echo", attempt=attempt, max_attempts=3, redrive_count=generation)


def _ledger(*events: events_pb2.MissionEvent) -> MissionLedger:
    ledger = MissionLedger()
    for event in events:
        ledger.observe(event)
    return ledger


def test_an_unknown_mission_is_neither_taken_nor_over() -> None:
    ledger = MissionLedger()
    assert not ledger.is_taken(_work())
    assert not ledger.is_over(_work())
    assert len(ledger) == 0


def test_a_started_takes_nothing_since_the_service_says_who_runs_an_attempt() -> None:
    """An earlier version's control stream holds every STARTED; the ledger reads past them."""
    log = EventLog()
    ledger = _ledger(log.created("m1"))
    ledger.observe(log.started("m1", attempt=1))
    assert not ledger.is_taken(_work(attempt=1))
    assert not ledger.is_over(_work(attempt=1))


def test_after_retrying_the_retry_message_runs_and_the_failed_attempt_is_over() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=True)
    ledger = _ledger(*log.events)
    assert not ledger.is_over(_work(attempt=1))
    ledger.observe(log.retrying("m1"))
    assert ledger.is_over(_work(attempt=1))
    assert ledger.is_taken(_work(attempt=1))
    retry = _work(attempt=2)
    assert not ledger.is_taken(retry)
    assert not ledger.is_over(retry)
    # Missions are kept apart.
    assert not ledger.is_taken(_work("m2", attempt=1))


@pytest.mark.parametrize("final", ["completed", "dead_lettered", "cancelled"])
def test_a_final_event_takes_every_message_and_ends_every_attempt(final: str) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    ledger = _ledger(*log.events)
    ledger.observe(getattr(log, final)("m1"))
    for attempt in (1, 2, 3):
        assert ledger.is_taken(_work(attempt=attempt)), attempt
        assert ledger.is_over(_work(attempt=attempt)), attempt


def test_a_cancelled_queued_mission_never_starts() -> None:
    log = EventLog()
    ledger = _ledger(log.created("m1"), log.cancelled("m1"))
    assert ledger.is_taken(_work(attempt=1))


def test_cancel_listeners_hear_cancelled_and_nothing_else() -> None:
    log = EventLog()
    heard: list[tuple[str, str]] = []
    ledger = MissionLedger()
    ledger.on_cancel(lambda event: heard.append((event.mission_id, event.cancelled.reason)))
    also: list[str] = []
    ledger.on_cancel(lambda event: also.append(event.id))
    for event in (log.created("m1"), log.started("m1"), log.completed("m1"), log.created("m2"), log.started("m2")):
        ledger.observe(event)
    assert heard == []
    cancelled = log.cancelled("m2", reason="operator")
    ledger.observe(cancelled)
    assert heard == [("m2", "operator")]
    assert also == [cancelled.id]


def test_redriven_starts_a_new_generation_where_attempt_one_runs_again() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=False)
    log.dead_lettered("m1")
    ledger = _ledger(*log.events)
    assert ledger.is_taken(_work(attempt=1, generation=0))
    ledger.observe(log.redriven("m1"))
    again = _work(attempt=1, generation=1)
    assert not ledger.is_taken(again)
    assert not ledger.is_over(again)


def test_a_message_of_an_old_generation_is_taken_and_over() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=True)
    log.retrying("m1")
    ledger = _ledger(*log.events)
    stale_retry = _work(attempt=2, generation=0)
    assert not ledger.is_taken(stale_retry)
    log.started("m1", attempt=2)
    log.failed("m1", will_retry=False)
    log.dead_lettered("m1")
    log.redriven("m1")
    ledger = _ledger(*log.events)
    # The old generation's retry message was redelivered after the redrive: it must not run.
    assert ledger.is_taken(stale_retry)
    assert ledger.is_over(stale_retry)
    assert not ledger.is_taken(_work(attempt=1, generation=1))


def test_a_redriven_of_an_older_generation_changes_nothing() -> None:
    log = EventLog()
    log.created("m1")
    log.dead_lettered("m1")
    first = log.redriven("m1")
    log.dead_lettered("m1")
    log.redriven("m1")
    ledger = _ledger(*log.events)
    ledger.observe(first)  # a duplicate of generation 1, read again
    assert not ledger.is_taken(_work(attempt=1, generation=2))
    assert ledger.is_taken(_work(attempt=1, generation=1))


def test_a_retrying_of_a_newer_generation_starts_it() -> None:
    log = EventLog()
    log.created("m1")
    ledger = _ledger(*log.events)
    log.dead_lettered("m1")
    log.redriven("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=True)
    # Only the RETRYING of generation 1 is read (the rest was missed): it still counts.
    ledger.observe(log.retrying("m1"))
    assert ledger.is_taken(_work(attempt=1, generation=0))
    assert ledger.is_over(_work(attempt=1, generation=1))
    assert not ledger.is_taken(_work(attempt=2, generation=1))


def test_a_retrying_of_an_older_generation_is_ignored() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=True)
    old_retry = log.retrying("m1")
    log.started("m1", attempt=2)
    log.failed("m1", will_retry=False)
    log.dead_lettered("m1")
    log.redriven("m1")
    ledger = _ledger(*log.events)
    ledger.observe(log.started("m1", attempt=1))
    ledger.observe(old_retry)  # redelivered out of order
    assert not ledger.is_over(_work(attempt=1, generation=1))


def test_enter_a_newer_generation_before_its_redriven_is_read() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=False)
    log.dead_lettered("m1")
    ledger = _ledger(*log.events)
    redriven = _work(attempt=1, generation=1)
    # Until the ledger knows generation 1 exists, its work is neither taken nor over.
    assert not ledger.is_taken(redriven)
    assert not ledger.is_over(redriven)
    ledger.enter(redriven)
    assert not ledger.is_taken(redriven)
    assert not ledger.is_over(redriven)
    # The old generation is now superseded.
    assert ledger.is_taken(_work(attempt=1, generation=0))
    # The REDRIVEN read later does not reset what generation 1 has done since.
    retrying = log.retrying("m1")
    retrying.generation, retrying.attempt = 1, 1  # published by the worker that ran generation 1
    ledger.observe(retrying)
    ledger.observe(log.redriven("m1"))
    assert ledger.is_taken(redriven)
    assert ledger.is_over(redriven)


def test_enter_the_known_or_an_older_generation_keeps_what_is_known() -> None:
    log = EventLog()
    ledger = _ledger(log.created("m1"), log.started("m1", attempt=1), log.retrying("m1"))
    ledger.enter(_work(attempt=1, generation=0))
    assert ledger.is_taken(_work(attempt=1))
    ledger.enter(_work("m2", attempt=1))
    assert len(ledger) == 2
    assert not ledger.is_taken(_work("m2", attempt=1))


def test_a_late_final_event_of_the_old_generation_does_not_end_the_new_one() -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1)
    log.failed("m1", will_retry=False)
    late = log.dead_lettered("m1")  # carries dead_lettered.mission.redrive_count == 0
    ledger = _ledger(*log.events[:-1])
    # The control stream lags: generation 1's work message arrives first and starts.
    running = _work(attempt=1, generation=1)
    ledger.enter(running)
    ledger.observe(log.started("m1", attempt=1))
    ledger.observe(late)
    assert not ledger.is_over(running)


def _finish(ledger: MissionLedger, log: EventLog, *mission_ids: str) -> None:
    for mission_id in mission_ids:
        for event in (log.created(mission_id), log.started(mission_id), log.completed(mission_id)):
            ledger.observe(event)


def test_only_the_missions_heard_of_most_recently_are_remembered_and_those_running_here_always() -> None:
    log = EventLog()
    ledger = MissionLedger(remember_finished=2)
    running = _work("running")
    ledger.enter(running)
    ledger.observe(log.cancelled("running"))  # its outcome must be dropped when it ends
    _finish(ledger, log, "m1", "m2", "m3")
    assert len(ledger) == 2
    # Heard of before m1..m3, but it runs here: kept, while m1 and m2 are forgotten.
    assert ledger.is_over(running)
    assert not ledger.is_taken(_work("m1")) and not ledger.is_taken(_work("m2"))
    assert ledger.is_taken(_work("m3"))
    ledger.leave(running)
    _finish(ledger, log, "m4")
    assert not ledger.is_over(running)  # forgotten once it no longer runs here


def test_a_mission_that_ends_again_counts_as_ended_last() -> None:
    log = EventLog()
    ledger = MissionLedger(remember_finished=2)
    _finish(ledger, log, "m1", "m2")
    ledger.observe(log.completed("m1"))  # a duplicate of its final event (a retried publish)
    _finish(ledger, log, "m3")
    assert ledger.is_taken(_work("m1"))
    assert not ledger.is_taken(_work("m2"))


def test_a_redriven_mission_is_heard_of_anew() -> None:
    log = EventLog()
    ledger = MissionLedger(remember_finished=2)
    for event in (log.created("m1"), log.started("m1"), log.failed("m1", will_retry=False), log.dead_lettered("m1")):
        ledger.observe(event)
    _finish(ledger, log, "m2")
    ledger.observe(log.redriven("m1"))
    _finish(ledger, log, "m3")
    # m2 is forgotten, m1 is not: the old generation's messages are stale, the new one's may run.
    assert not ledger.is_taken(_work("m2"))
    assert ledger.is_taken(_work("m1", generation=0))
    assert not ledger.is_taken(_work("m1", generation=1))
