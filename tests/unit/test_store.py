"""MissionStore: the SQLite read model and its checkpoint."""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Iterator

import pytest

from mission_service import projection
from mission_service import store as store_module
from mission_service.store import MissionStore
from missions.v1 import events_pb2, mission_pb2
from tests.unit.factories import EventLog, time_of

M = mission_pb2


@pytest.fixture
def store() -> Iterator[MissionStore]:
    db = MissionStore(":memory:")
    yield db
    db.close()


def test_an_empty_store(store: MissionStore) -> None:
    assert store.checkpoint() == 0
    assert store.get("m1") is None
    assert store.positions(["m1"]) == {}
    assert store.positions([]) == {}
    page = store.list(states=[], mission_type="", after_created_sequence=0, limit=10)
    assert (page.missions, page.last_created_sequence, page.more) == ([], 0, False)


def test_apply_batch_projects_missions_and_advances_the_checkpoint(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.created("m2", "sleep")
    log.started("m1")
    log.completed("m1", answer=1)
    store.apply_batch(log.events)
    assert store.checkpoint() == 4
    m1, m2 = store.get("m1"), store.get("m2")
    assert m1 is not None
    assert m2 is not None
    assert (m1.state, m1.last_sequence) == (M.MISSION_STATE_SUCCEEDED, 4)
    assert (m2.state, m2.type, m2.last_sequence) == (M.MISSION_STATE_QUEUED, "sleep", 2)


def test_the_checkpoint_follows_the_last_event_even_when_it_applies_to_nothing(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("ghost")
    store.apply_batch(log.events)
    assert store.checkpoint() == 2
    assert store.get("ghost") is None


def test_an_empty_batch_changes_nothing(store: MissionStore) -> None:
    log = EventLog()
    store.apply_batch([log.created("m1")])
    store.apply_batch([])
    assert store.checkpoint() == 1


def test_a_batch_that_fails_half_way_leaves_no_trace(store: MissionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog()
    store.apply_batch([log.created("m0")])
    good, bad = log.created("m1"), log.created("m2")
    real_apply = projection.apply

    def failing_apply(current: M.Mission | None, event: events_pb2.MissionEvent) -> M.Mission | None:
        if event.id == bad.id:
            raise RuntimeError("disk on fire")
        return real_apply(current, event)

    monkeypatch.setattr(store_module, "apply", failing_apply)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.apply_batch([good, bad])
    assert store.get("m1") is None
    assert store.checkpoint() == 1
    # The transaction was rolled back, not left open: the next batch commits normally.
    monkeypatch.setattr(store_module, "apply", real_apply)
    store.apply_batch([good, bad])
    assert store.get("m1") is not None
    assert store.get("m2") is not None
    assert store.checkpoint() == 3


def test_positions_record_the_created_and_the_first_final_sequence(store: MissionStore) -> None:
    log = EventLog()
    log.created("done")
    log.created("running")
    log.started("done")
    log.completed("done")
    log.started("running")
    log.cancelled("done")  # a late final event: the first one stays
    store.apply_batch(log.events)
    assert store.positions(["done", "running", "unknown", "done"]) == {"done": (1, 4), "running": (2, None)}


def test_positions_of_a_dead_lettered_mission(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1")
    log.failed("m1", will_retry=False)  # FAILED is not the final event: DEAD_LETTERED is
    store.apply_batch(log.events)
    assert store.positions(["m1"]) == {"m1": (1, None)}
    store.apply_batch([log.dead_lettered("m1")])
    assert store.positions(["m1"]) == {"m1": (1, 4)}


def test_a_duplicate_created_keeps_the_original_position(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.created("m2")
    log.created("m1")
    store.apply_batch(log.events)
    assert store.positions(["m1"]) == {"m1": (1, None)}
    ids = [m.id for m in store.list(states=[], mission_type="", after_created_sequence=0, limit=10).missions]
    assert ids == ["m1", "m2"]


@pytest.fixture
def populated(store: MissionStore) -> MissionStore:
    """Seven missions: m1..m7, echo and sleep alternating, m2 and m5 finished."""
    log = EventLog()
    for n in range(1, 8):
        log.created(f"m{n}", "echo" if n % 2 else "sleep")
    log.started("m2")
    log.completed("m2")
    log.started("m5")
    log.failed("m5", will_retry=False)
    log.started("m7")
    store.apply_batch(log.events)
    return store


def _ids(page: store_module.Page) -> list[str]:
    return [mission.id for mission in page.missions]


def test_list_is_oldest_first_with_a_more_flag(populated: MissionStore) -> None:
    first = populated.list(states=[], mission_type="", after_created_sequence=0, limit=3)
    assert (_ids(first), first.last_created_sequence, first.more) == (["m1", "m2", "m3"], 3, True)
    second = populated.list(states=[], mission_type="", after_created_sequence=3, limit=3)
    assert (_ids(second), second.last_created_sequence, second.more) == (["m4", "m5", "m6"], 6, True)
    third = populated.list(states=[], mission_type="", after_created_sequence=6, limit=3)
    assert (_ids(third), third.last_created_sequence, third.more) == (["m7"], 7, False)


def test_list_newest_first_pages_down_from_the_newest(populated: MissionStore) -> None:
    def page(after: int, limit: int) -> tuple[list[str], int, bool]:
        found = populated.list(states=[], mission_type="", after_created_sequence=after, limit=limit, newest_first=True)
        return _ids(found), found.last_created_sequence, found.more

    assert page(0, 3) == (["m7", "m6", "m5"], 5, True)
    assert page(5, 3) == (["m4", "m3", "m2"], 2, True)
    assert page(2, 3) == (["m1"], 1, False)
    assert page(1, 3) == ([], 1, False)


def test_list_newest_first_with_filters(populated: MissionStore) -> None:
    queued = [M.MISSION_STATE_QUEUED]
    first = populated.list(states=queued, mission_type="echo", after_created_sequence=0, limit=1, newest_first=True)
    assert (_ids(first), first.last_created_sequence, first.more) == (["m3"], 3, True)
    rest = populated.list(states=queued, mission_type="echo", after_created_sequence=3, limit=5, newest_first=True)
    assert (_ids(rest), rest.more) == (["m1"], False)


def test_list_page_exactly_at_the_end_has_no_more(populated: MissionStore) -> None:
    page = populated.list(states=[], mission_type="", after_created_sequence=4, limit=3)
    assert (_ids(page), page.more) == (["m5", "m6", "m7"], False)


def test_list_past_the_end_is_empty_and_keeps_the_position(populated: MissionStore) -> None:
    page = populated.list(states=[], mission_type="", after_created_sequence=7, limit=3)
    assert (page.missions, page.last_created_sequence, page.more) == ([], 7, False)


def test_list_filters_by_type(populated: MissionStore) -> None:
    page = populated.list(states=[], mission_type="sleep", after_created_sequence=0, limit=10)
    assert _ids(page) == ["m2", "m4", "m6"]
    assert all(mission.type == "sleep" for mission in page.missions)


def test_list_filters_by_states(populated: MissionStore) -> None:
    finished = [M.MISSION_STATE_SUCCEEDED, M.MISSION_STATE_FAILED]
    assert _ids(populated.list(states=finished, mission_type="", after_created_sequence=0, limit=10)) == ["m2", "m5"]
    running = [M.MISSION_STATE_RUNNING]
    assert _ids(populated.list(states=running, mission_type="", after_created_sequence=0, limit=10)) == ["m7"]


def test_list_combines_filters_and_paginates(populated: MissionStore) -> None:
    queued = [M.MISSION_STATE_QUEUED]
    first = populated.list(states=queued, mission_type="echo", after_created_sequence=0, limit=1)
    assert (_ids(first), first.last_created_sequence, first.more) == (["m1"], 1, True)
    rest = populated.list(states=queued, mission_type="echo", after_created_sequence=1, limit=5)
    assert (_ids(rest), rest.more) == (["m3"], False)


def _seconds(sequence: int) -> float:
    return float(time_of(sequence).seconds)


def test_list_filters_by_create_time_at_or_after_min_and_before_max(populated: MissionStore) -> None:
    within = (_seconds(3), _seconds(6))
    page = populated.list(states=[], mission_type="", after_created_sequence=0, limit=10, create_time=within)
    assert _ids(page) == ["m3", "m4", "m5"]
    since = populated.list(
        states=[], mission_type="", after_created_sequence=0, limit=10, create_time=(_seconds(6), None)
    )
    assert _ids(since) == ["m6", "m7"]


def test_list_by_end_time_leaves_out_unfinished_missions(populated: MissionStore) -> None:
    # m2 ended at sequence 9 and m5 at 11; the others have not ended.
    ended = populated.list(
        states=[], mission_type="", after_created_sequence=0, limit=10, end_time=(None, _seconds(20))
    )
    assert _ids(ended) == ["m2", "m5"]
    late = populated.list(states=[], mission_type="", after_created_sequence=0, limit=10, end_time=(_seconds(10), None))
    assert _ids(late) == ["m5"]


def test_list_filters_by_labels_all_of_them(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1", labels={"team": "ops", "env": "prod"})
    log.created("m2", labels={"team": "ops"})
    log.created("m3", labels={"team": "web", "env": "prod"})
    log.started("m1")  # a later event keeps the labels findable
    store.apply_batch(log.events)

    def having(*labels: tuple[str, str]) -> list[str]:
        return _ids(store.list(states=[], mission_type="", after_created_sequence=0, limit=10, labels=labels))

    assert having(("team", "ops")) == ["m1", "m2"]
    assert having(("env", "prod"), ("team", "ops")) == ["m1"]
    assert having(("team", "nobody")) == []


def test_list_filters_by_id_prefix(store: MissionStore) -> None:
    log = EventLog()
    for mission_id in ("e8987c7d-0001", "e8987c7d-0002", "e8987c7e-0001", "e8987c7"):
        log.created(mission_id)
    store.apply_batch(log.events)

    def starting(prefix: str) -> list[str]:
        return _ids(store.list(states=[], mission_type="", after_created_sequence=0, limit=10, id_prefix=prefix))

    assert starting("e8987c7d") == ["e8987c7d-0001", "e8987c7d-0002"]
    assert starting("e8987c7e-0001") == ["e8987c7e-0001"]
    assert starting("e8987c7f") == []


def test_a_file_backed_store_survives_reopening(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state" / "missions.sqlite3"  # the directory does not exist yet
    log = EventLog()
    log.created("m1")
    log.started("m1")
    first = MissionStore(path)
    first.apply_batch(log.events)
    first.close()
    reopened = MissionStore(path)
    try:
        mission = reopened.get("m1")
        assert mission is not None
        assert mission.state == M.MISSION_STATE_RUNNING
        assert reopened.checkpoint() == 2
        assert reopened.positions(["m1"]) == {"m1": (1, None)}
        reopened.apply_batch([log.completed("m1")])
        assert reopened.checkpoint() == 3
    finally:
        reopened.close()


def test_counts_by_state(populated: MissionStore) -> None:
    assert populated.counts_by_state() == {
        M.MISSION_STATE_QUEUED: 4,
        M.MISSION_STATE_SUCCEEDED: 1,
        M.MISSION_STATE_FAILED: 1,
        M.MISSION_STATE_RUNNING: 1,
    }


def test_counts_by_state_of_an_empty_store(store: MissionStore) -> None:
    assert store.counts_by_state() == {}


def test_waiting_by_type_counts_queued_and_retrying_missions_per_type(store: MissionStore) -> None:
    log = EventLog()
    for n in range(1, 8):
        log.created(f"m{n}", "resize" if n < 4 else "echo")
    log.started("m1")
    log.failed("m1", will_retry=True)
    log.retrying("m1")  # RETRYING: waiting again
    log.started("m2")  # RUNNING: a worker has it
    log.started("m4")
    log.completed("m4")
    log.cancelled("m5")
    store.apply_batch(log.events)
    assert store.waiting_by_type() == {"resize": 2, "echo": 2}
    store.apply_batch([log.started("m1", attempt=2), log.started("m3"), log.started("m6"), log.started("m7")])
    assert store.waiting_by_type() == {}


def test_waiting_by_type_of_an_empty_store(store: MissionStore) -> None:
    assert store.waiting_by_type() == {}


def test_ended_since_counts_missions_in_a_state_by_end_time(populated: MissionStore) -> None:
    # Event n happens at time_of(n): m2 completed at event 9, m5 failed at event 11.
    succeeded_at = time_of(9).seconds
    assert populated.ended_since(M.MISSION_STATE_SUCCEEDED, succeeded_at - 100) == 1
    assert populated.ended_since(M.MISSION_STATE_SUCCEEDED, succeeded_at) == 1
    assert populated.ended_since(M.MISSION_STATE_SUCCEEDED, succeeded_at + 0.5) == 0
    assert populated.ended_since(M.MISSION_STATE_FAILED, time_of(11).seconds) == 1
    assert populated.ended_since(M.MISSION_STATE_FAILED, time_of(12).seconds) == 0
    # Missions that have not ended are never counted.
    assert populated.ended_since(M.MISSION_STATE_QUEUED, 0) == 0
    assert populated.ended_since(M.MISSION_STATE_RUNNING, 0) == 0


def _dead_letter(log: EventLog, mission_id: str) -> None:
    log.started(mission_id)
    log.failed(mission_id, will_retry=False)
    log.dead_lettered(mission_id)


def _dead_ids(store: MissionStore) -> list[str]:
    return _ids(store.list(states=[], mission_type="", after_created_sequence=0, limit=10, dead_lettered=True))


def test_list_dead_lettered_only(store: MissionStore) -> None:
    log = EventLog()
    for n in range(1, 7):
        log.created(f"m{n}", "echo" if n % 2 else "sleep")
    _dead_letter(log, "m1")
    _dead_letter(log, "m4")
    _dead_letter(log, "m5")
    log.started("m2")
    log.failed("m2", will_retry=False)  # FAILED, but its DEAD_LETTERED is not in yet
    log.started("m3")
    log.completed("m3")
    store.apply_batch(log.events)
    dead = store.list(states=[], mission_type="", after_created_sequence=0, limit=10, dead_lettered=True)
    assert (_ids(dead), dead.more) == (["m1", "m4", "m5"], False)
    assert all(mission.dead_lettered for mission in dead.missions)
    first = store.list(states=[], mission_type="", after_created_sequence=0, limit=2, dead_lettered=True)
    assert (_ids(first), first.last_created_sequence, first.more) == (["m1", "m4"], 4, True)
    rest = store.list(states=[], mission_type="", after_created_sequence=4, limit=2, dead_lettered=True)
    assert (_ids(rest), rest.more) == (["m5"], False)
    echo = store.list(states=[], mission_type="echo", after_created_sequence=0, limit=10, dead_lettered=True)
    assert _ids(echo) == ["m1", "m5"]
    # Without the flag, everything is listed.
    assert len(store.list(states=[], mission_type="", after_created_sequence=0, limit=10).missions) == 6


def test_stranded_lists_missions_failed_for_good_but_not_dead_lettered_oldest_first(store: MissionStore) -> None:
    log = EventLog()
    for n in range(1, 6):
        log.created(f"m{n}")
    _dead_letter(log, "m1")
    for mission_id in ("m4", "m2", "m5"):
        log.started(mission_id)
        log.failed(mission_id, will_retry=False)
    log.started("m3")
    log.failed("m3", will_retry=True)  # RUNNING until its RETRYING: the reaper's other sweep
    store.apply_batch(log.events)
    assert [mission.id for mission in store.stranded(10)] == ["m2", "m4", "m5"]
    assert [mission.id for mission in store.stranded(2)] == ["m2", "m4"]
    store.apply_batch([log.dead_lettered("m2")])
    assert [mission.id for mission in store.stranded(10)] == ["m4", "m5"]


def test_redriven_resets_the_final_sequence_and_the_dead_letter_flag(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    _dead_letter(log, "m1")
    store.apply_batch(log.events)
    assert store.positions(["m1"]) == {"m1": (1, 4)}
    assert store.ended_since(M.MISSION_STATE_FAILED, 0) == 1
    store.apply_batch([log.redriven("m1")])
    # A watch of the new generation must not end at the old generation's final event.
    assert store.positions(["m1"]) == {"m1": (1, None)}
    assert _dead_ids(store) == []
    assert store.counts_by_state() == {M.MISSION_STATE_QUEUED: 1}
    assert store.ended_since(M.MISSION_STATE_FAILED, 0) == 0
    store.apply_batch([log.started("m1"), log.completed("m1")])
    assert store.positions(["m1"]) == {"m1": (1, 7)}
    assert store.ended_since(M.MISSION_STATE_SUCCEEDED, time_of(7).seconds) == 1


def test_a_redriven_that_does_not_apply_still_resets_nothing_else(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1")
    log.completed("m1")
    store.apply_batch(log.events)
    store.apply_batch([log.redriven("m1")])
    mission = store.get("m1")
    assert mission is not None
    assert mission.state == M.MISSION_STATE_SUCCEEDED
    assert store.counts_by_state() == {M.MISSION_STATE_SUCCEEDED: 1}


def _make_file(path: pathlib.Path, version: int, schema: str) -> None:
    db = sqlite3.connect(str(path))
    try:
        db.executescript(schema)
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()
    finally:
        db.close()


_VERSION_1_SCHEMA = """
CREATE TABLE missions (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    state INTEGER NOT NULL,
    created_sequence INTEGER NOT NULL,
    final_sequence INTEGER,
    body BLOB NOT NULL
);
CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), sequence INTEGER NOT NULL);
INSERT INTO missions VALUES ('old', 'echo', 1, 1, NULL, x'');
INSERT INTO checkpoint VALUES (1, 42);
"""


@pytest.mark.parametrize("version", [0, 1, store_module.SCHEMA_VERSION + 1])
def test_a_file_of_another_schema_version_is_rebuilt_from_scratch(tmp_path: pathlib.Path, version: int) -> None:
    path = tmp_path / "missions.sqlite3"
    _make_file(path, version, _VERSION_1_SCHEMA)
    rebuilt = MissionStore(path)
    try:
        assert rebuilt.checkpoint() == 0
        assert rebuilt.get("old") is None
        assert rebuilt.counts_by_state() == {}
        # The new columns exist: the follower can re-apply the log from the start.
        log = EventLog()
        log.created("m1")
        _dead_letter(log, "m1")
        rebuilt.apply_batch(log.events)
        assert _dead_ids(rebuilt) == ["m1"]
        assert rebuilt.checkpoint() == 4
    finally:
        rebuilt.close()
    db = sqlite3.connect(str(path))
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
    finally:
        db.close()


def test_a_file_of_the_current_version_gets_the_indexes_it_lacks(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "missions.sqlite3"
    first = MissionStore(path)
    log = EventLog()
    log.created("m1", "resize")
    first.apply_batch(log.events)
    first.close()
    db = sqlite3.connect(str(path))
    try:
        db.execute("DROP INDEX missions_waiting")  # a file written before the index existed
        db.commit()
    finally:
        db.close()
    reopened = MissionStore(path)
    try:
        assert reopened.waiting_by_type() == {"resize": 1}
    finally:
        reopened.close()


def test_a_file_of_the_current_version_is_kept(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "missions.sqlite3"
    first = MissionStore(path)
    log = EventLog()
    log.created("m1")
    _dead_letter(log, "m1")
    first.apply_batch(log.events)
    first.close()
    reopened = MissionStore(path)
    try:
        assert reopened.checkpoint() == 4
        assert _dead_ids(reopened) == ["m1"]
    finally:
        reopened.close()


def _withdrawn(event: events_pb2.MissionEvent) -> events_pb2.MissionEvent:
    event.started.withdrawn = True
    return event


def _shown(store: MissionStore, mission_id: str = "m1") -> tuple[str, str]:
    mission = store.get(mission_id)
    assert mission is not None
    return mission.worker_id, mission.worker_session


def test_apply_batch_returns_the_duplicates_which_change_no_mission(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", worker_id="w-a", session="s-a")
    assert store.apply_batch(log.events) == set()
    before = store.get("m1")
    duplicates = [
        log.created("m1", "sleep"),
        log.started("m1", worker_id="w-b", session="s-b"),
        _withdrawn(log.started("m1", worker_id="w-c", session="s-c")),
        log.redriven("m1"),
    ]
    assert store.apply_batch(duplicates) == {3, 4, 5, 6}
    assert store.get("m1") == before  # last_sequence included
    assert store.checkpoint() == 6
    assert store.positions(["m1"]) == {"m1": (1, None)}


def test_duplicates_after_lists_the_duplicate_sequences_past_a_position(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", session="s-a")
    log.started("m1", session="s-b")  # 3: a duplicate
    log.progress("m1", 0.5)
    log.created("m1")  # 5: a duplicate
    assert store.apply_batch(log.events) == {3, 5}
    mission = store.get("m1")
    assert mission is not None
    assert (mission.last_sequence, mission.progress) == (4, 0.5)
    assert store.duplicates_after(0) == {3, 5}
    assert store.duplicates_after(3) == {5}
    assert store.duplicates_after(5) == set()


def test_starters_are_the_shown_worker_then_the_others_of_the_current_attempt(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1, worker_id="w-a", session="s-a")
    log.started("m1", attempt=1, worker_id="w-b", session="s-b")
    store.apply_batch(log.events)
    mission = store.get("m1")
    assert mission is not None
    assert list(store.starters(mission)) == [("w-a", "s-a"), ("w-b", "s-b")]
    log.failed("m1", will_retry=True)
    log.retrying("m1")
    log.started("m1", attempt=2, worker_id="w-c", session="s-c")
    store.apply_batch(log.events[3:])
    mission = store.get("m1")
    assert mission is not None
    assert list(store.starters(mission)) == [("w-c", "s-c")]  # attempt 1's second starter is past


def test_starters_exclude_withdrawn_sessions(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", worker_id="w-a", session="s-a")
    log.started("m1", worker_id="w-b", session="s-b")
    log.started("m1", worker_id="w-c", session="s-c")
    _withdrawn(log.started("m1", worker_id="w-b", session="s-b"))
    store.apply_batch(log.events)
    mission = store.get("m1")
    assert mission is not None
    assert list(store.starters(mission)) == [("w-a", "s-a"), ("w-c", "s-c")]
    assert _shown(store) == ("w-a", "s-a")  # another worker's withdrawal changes nothing shown


def test_a_withdrawal_of_the_shown_worker_shows_the_other_starter(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", worker_id="w-a", session="s-a")
    log.started("m1", worker_id="w-b", session="s-b")
    store.apply_batch(log.events)
    assert _shown(store) == ("w-a", "s-a")
    assert store.apply_batch([_withdrawn(log.started("m1", worker_id="w-a", session="s-a"))]) == {4}
    mission = store.get("m1")
    assert mission is not None
    assert (mission.worker_id, mission.worker_session) == ("w-b", "s-b")
    assert (mission.state, mission.last_sequence) == (M.MISSION_STATE_RUNNING, 2)
    assert list(store.starters(mission)) == [("w-b", "s-b")]


def test_a_starter_logged_after_the_shown_workers_withdrawal_is_shown(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", worker_id="w-a", session="s-a")
    _withdrawn(log.started("m1", worker_id="w-a", session="s-a"))
    store.apply_batch(log.events)
    mission = store.get("m1")
    assert mission is not None
    assert _shown(store) == ("w-a", "s-a")  # nobody else to show yet
    assert list(store.starters(mission)) == []
    assert store.apply_batch([log.started("m1", worker_id="w-b", session="s-b")]) == {4}
    mission = store.get("m1")
    assert mission is not None
    assert (mission.worker_id, mission.worker_session, mission.last_sequence) == ("w-b", "s-b", 2)
    assert list(store.starters(mission)) == [("w-b", "s-b")]


def test_a_duplicate_started_of_a_past_attempt_does_not_change_the_shown_worker(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1, worker_id="w-a", session="s-a")
    log.failed("m1", will_retry=True)
    log.retrying("m1")
    log.started("m1", attempt=2, worker_id="w-b", session="s-b")
    _withdrawn(log.started("m1", attempt=2, worker_id="w-b", session="s-b"))
    log.started("m1", attempt=1, worker_id="w-c", session="s-c")  # a late copy of attempt 1
    assert store.apply_batch(log.events) == {6, 7}
    assert _shown(store) == ("w-b", "s-b")


def _verdicts(store: MissionStore, events: list[events_pb2.MissionEvent]) -> list[tuple[str, bool]]:
    """(session, runs) of each STARTED in ``events``, as apply_batch tells them."""
    heard: list[tuple[str, bool]] = []
    store.apply_batch(events, lambda started, runs: heard.append((started.started.worker_session, runs)))
    return heard


def test_only_the_first_started_of_an_attempt_runs_and_its_session_may_ask_again(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", session="s-a")
    log.started("m1", session="s-b")  # a copy of the work message, started elsewhere
    log.started("m1", session="s-a")  # s-a asking again
    _withdrawn(log.started("m1", session="s-b"))  # no verdict on a withdrawal
    assert _verdicts(store, log.events) == [("s-a", True), ("s-b", False), ("s-a", True)]


def test_every_batching_of_the_log_gives_each_started_the_same_verdict(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", session="s-a")
    log.started("m1", session="s-b")
    log.cancelled("m1")
    log.started("m1", session="s-a")  # asked again after the cancellation: no longer runs
    one_by_one = MissionStore(":memory:")
    apart = [verdict for event in log.events for verdict in _verdicts(one_by_one, [event])]
    assert _verdicts(store, log.events) == apart == [("s-a", True), ("s-b", False), ("s-a", False)]


def test_a_started_of_an_attempt_over_is_refused(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", attempt=1, session="s-a")
    log.failed("m1", will_retry=True)
    log.retrying("m1")  # the reaper declared attempt 1 lost
    late = log.started("m1", attempt=1, session="s-b")  # a late copy of attempt 1
    log.started("m1", attempt=2, session="s-c")
    assert _verdicts(store, log.events) == [("s-a", True), ("s-b", False), ("s-c", True)]
    assert late.sequence in store.duplicates_after(0)


def test_a_started_of_a_mission_already_over_is_a_duplicate_no_reader_sees(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    cancelled = log.cancelled("m1")
    late = log.started("m1", session="s-a")  # its work message was taken before the worker read the CANCELLED
    assert _verdicts(store, log.events) == [("s-a", False)]
    assert store.duplicates_after(0) == {late.sequence}
    mission = store.get("m1")
    assert mission is not None
    assert (mission.state, mission.last_sequence) == (M.MISSION_STATE_CANCELLED, cancelled.sequence)


def test_a_started_of_an_old_generation_is_refused(store: MissionStore) -> None:
    log = EventLog()
    log.created("m1")
    log.started("m1", session="s-a")
    log.failed("m1", will_retry=False)
    log.dead_lettered("m1")
    log.redriven("m1")  # generation 1
    stale = log.started("m1", session="s-b")
    stale.generation = 0  # a late copy of generation 0's work message
    assert _verdicts(store, log.events) == [("s-a", True), ("s-b", False)]
    assert stale.sequence in store.duplicates_after(0)


def test_due_lists_scheduled_missions_due_by_a_time_earliest_first(store: MissionStore) -> None:
    log = EventLog()
    later = log.scheduled("later", due_in=30)
    sooner = log.scheduled("sooner", due_in=20)
    log.created("queued")
    log.scheduled("cancelled", due_in=10)
    log.cancelled("cancelled")
    store.apply_batch(log.events)
    due_of = {
        "later": later.created.mission.due_time.seconds,
        "sooner": sooner.created.mission.due_time.seconds,
    }

    assert store.next_due(after=0) == due_of["sooner"]
    assert store.next_due(after=due_of["sooner"]) == due_of["later"]
    assert [mission.id for mission in store.due(due_of["later"], limit=10)] == ["sooner", "later"]
    assert [mission.id for mission in store.due(due_of["later"], limit=1)] == ["sooner"]
    assert store.due(due_of["sooner"] - 1, limit=10) == []
    store.apply_batch([log.due("sooner"), log.due("later")])
    assert store.next_due(after=0) is None
    fired = store.get("sooner")
    assert fired is not None
    assert fired.state == mission_pb2.MISSION_STATE_QUEUED


def test_a_second_due_is_recorded_as_a_duplicate(store: MissionStore) -> None:
    log = EventLog()
    log.scheduled("m1")
    first, second = log.due("m1"), log.due("m1")
    assert store.apply_batch([*log.events[:1], first, second]) == {second.sequence}
