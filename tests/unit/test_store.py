"""MissionStore: the SQLite read model and its checkpoint."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from mission_service import projection
from mission_service import store as store_module
from mission_service.store import MissionStore
from missions.v1 import events_pb2, mission_pb2
from tests.unit.factories import EventLog

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
