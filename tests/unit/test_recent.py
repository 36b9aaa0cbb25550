"""RecentEvents: the window of latest events that replays near the tail are served from."""

from __future__ import annotations

from mission_service.recent import RecentEvents
from tests.unit.factories import EventLog


def _seqs(events: object) -> list[int]:
    assert isinstance(events, list)
    return [event.sequence for event in events]


def test_it_serves_every_event_after_a_position_it_covers() -> None:
    log = EventLog()
    recent = RecentEvents(covers_after=0)
    recent.extend([log.created("m1"), log.started("m1"), log.completed("m1")])
    assert _seqs(recent.after(0)) == [1, 2, 3]
    assert _seqs(recent.after(2)) == [3]
    assert _seqs(recent.after(3)) == []


def test_a_position_before_what_it_covers_is_not_served() -> None:
    log = EventLog(start=10)
    recent = RecentEvents(covers_after=10)  # a replica that started at sequence 10
    recent.extend([log.created("m1")])
    assert recent.after(9) is None
    assert _seqs(recent.after(10)) == [11]


def test_gaps_in_the_sequence_are_covered_too() -> None:
    log = EventLog()
    first = log.created("m1")
    log.created("m1")  # a duplicate: never extended into the window, a reader never sees it
    third = log.started("m1")
    recent = RecentEvents(covers_after=0)
    recent.extend([first, third])
    assert _seqs(recent.after(1)) == [3]
    assert _seqs(recent.after(2)) == [3]


def test_the_oldest_events_go_first_beyond_the_count() -> None:
    log = EventLog()
    recent = RecentEvents(covers_after=0, max_events=2)
    recent.extend([log.created("m1"), log.started("m1"), log.completed("m1")])
    assert len(recent) == 2
    assert recent.covers_after == 1
    assert recent.after(0) is None
    assert _seqs(recent.after(1)) == [2, 3]


def test_the_oldest_events_go_first_beyond_the_bytes() -> None:
    log = EventLog()
    events = [log.created("m1"), log.started("m1"), log.completed("m1")]
    sizes = [len(event.SerializeToString()) for event in events]
    recent = RecentEvents(covers_after=0, max_bytes=sizes[1] + sizes[2])
    recent.extend(events)
    assert recent.bytes == sizes[1] + sizes[2]
    assert _seqs(recent.after(1)) == [2, 3]
    assert recent.after(0) is None


def test_without_room_it_covers_only_what_comes_next() -> None:
    log = EventLog()
    recent = RecentEvents(covers_after=0, max_events=0)
    recent.extend([log.created("m1"), log.started("m1")])
    assert len(recent) == 0
    assert recent.after(1) is None
    assert _seqs(recent.after(2)) == []


def test_restart_forgets_everything_before_the_new_start() -> None:
    log = EventLog()
    recent = RecentEvents(covers_after=0)
    recent.extend([log.created("m1")])
    recent.restart(covers_after=100)
    assert (len(recent), recent.bytes) == (0, 0)
    assert recent.after(1) is None
    assert _seqs(recent.after(100)) == []
