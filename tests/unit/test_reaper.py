"""Reaper.sweep: RUNNING missions of lost worker sessions get a failed attempt, like a worker would publish."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf import duration_pb2

from mission_service.reaper import WORKER_LOST, Reaper
from mission_service.store import MissionStore
from mission_service.worker_registry import WorkerRegistry
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from tests.unit.factories import EventLog

E = events_pb2
M = mission_pb2
SOURCE = "mission-service/tests"


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class WallClock:
    """time.time, moved forward by the test."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


class Published:
    """The reaper's publish function: records each event with its priority."""

    def __init__(self) -> None:
        self.events: list[tuple[events_pb2.MissionEvent, int | None]] = []

    async def __call__(self, event: events_pb2.MissionEvent, priority: int | None) -> None:
        self.events.append((event, priority))

    def take(self) -> list[events_pb2.MissionEvent]:
        events = [event for event, _ in self.events]
        self.events.clear()
        return events


class Setup:
    def __init__(self, store: MissionStore) -> None:
        self.store = store
        self.clock = Clock()
        self.workers = WorkerRegistry(self.clock)
        self.published = Published()
        self.wall = WallClock()
        self.reaper = Reaper(store, self.workers, self.published, SOURCE, self.wall)
        self.log = EventLog()

    def beat(self, session: str) -> None:
        interval = duration_pb2.Duration()
        interval.FromTimedelta(timedelta(seconds=2))
        self.workers.record(worker_pb2.Worker(id=f"worker-{session}", session=session, heartbeat_interval=interval))

    def silence(self, seconds: float) -> None:
        self.clock.now += seconds

    def apply(self, events: list[events_pb2.MissionEvent] | None = None) -> None:
        """Commit the log's new events (or the given ones, numbered next) to the store."""
        if events is None:
            events = [event for event in self.log.events if event.sequence > self.store.checkpoint()]
        else:
            for event in events:
                self.log.sequence += 1
                event.sequence = self.log.sequence
        self.store.apply_batch(events)

    def running(self, mission_id: str, session: str, attempt: int = 1, **fields: Any) -> None:
        self.log.created(mission_id, priority=M.PRIORITY_HIGH, **fields)
        for previous in range(1, attempt):
            self.log.started(mission_id, attempt=previous, session="earlier")
            self.log.failed(mission_id, will_retry=True)
            self.log.retrying(mission_id)
        self.log.started(mission_id, attempt=attempt, worker_id=f"worker-{session}", session=session)


@pytest.fixture
def setup() -> Iterator[Setup]:
    store = MissionStore(":memory:")
    yield Setup(store)
    store.close()


async def test_a_mission_on_a_lost_session_fails_with_worker_lost_and_is_retried_at_once(setup: Setup) -> None:
    setup.running("m1", "s-dead", attempt=1)
    setup.apply()
    setup.beat("s-dead")
    setup.silence(10)
    assert await setup.reaper.sweep() == 1
    [(failed, failed_priority), (retry, retry_priority)] = setup.published.events
    assert (failed.type, retry.type) == (E.EVENT_TYPE_FAILED, E.EVENT_TYPE_RETRYING)
    assert failed_priority == retry_priority == M.PRIORITY_HIGH
    assert failed.failed.error == WORKER_LOST
    assert failed.failed.error.type == "WorkerLost"
    assert failed.failed.will_retry
    assert retry.retrying.delay.ToTimedelta() == timedelta(0)
    assert retry.retrying.next_attempt_time == retry.time
    assert retry.retrying.mission.state == M.MISSION_STATE_RETRYING
    assert (retry.retrying.mission.id, retry.retrying.mission.attempt) == ("m1", 1)
    for event in (failed, retry):
        assert (event.mission_id, event.attempt, event.source) == ("m1", 1, SOURCE)
        assert event.mission_type == "echo"
        assert event.correlation_id == "m1"  # the mission has none of its own


async def test_the_mission_correlation_id_is_kept(setup: Setup) -> None:
    setup.running("m1", "s-dead", correlation_id="trace-9")
    setup.apply()
    setup.silence(20)  # never heard from, and the registry has listened long enough
    await setup.reaper.sweep()
    assert {event.correlation_id for event, _ in setup.published.events} == {"trace-9"}


async def test_a_lost_last_attempt_is_dead_lettered(setup: Setup) -> None:
    setup.running("m1", "s-dead", attempt=3)
    setup.apply()
    setup.beat("s-dead")
    setup.silence(10)
    assert await setup.reaper.sweep() == 1
    failed, dead = setup.published.take()
    assert (failed.type, dead.type) == (E.EVENT_TYPE_FAILED, E.EVENT_TYPE_DEAD_LETTERED)
    assert not failed.failed.will_retry
    assert dead.dead_lettered.last_error == WORKER_LOST
    assert dead.dead_lettered.reason == "attempts exhausted after attempt 3 of 3"
    assert dead.dead_lettered.mission.state == M.MISSION_STATE_FAILED
    # Once applied, the mission is dead-lettered and no longer running.
    setup.apply([failed, dead])
    mission = setup.store.get("m1")
    assert mission is not None
    assert (mission.state, mission.dead_lettered, mission.error.type) == (M.MISSION_STATE_FAILED, True, "WorkerLost")


async def test_a_last_attempt_whose_worker_died_before_dead_lettering_it_is_dead_lettered(setup: Setup) -> None:
    setup.running("m1", "s-dead", attempt=3)
    setup.log.failed("m1", will_retry=False, error_type="FailError")  # then the worker died
    setup.running("other", "s-dead", attempt=3)
    setup.log.failed("other", will_retry=False)
    setup.log.dead_lettered("other")  # ended properly
    setup.apply()
    setup.beat("s-dead")
    setup.silence(10)
    assert await setup.reaper.sweep() == 1
    (dead,) = setup.published.take()
    assert (dead.type, dead.mission_id, dead.attempt, dead.source) == (E.EVENT_TYPE_DEAD_LETTERED, "m1", 3, SOURCE)
    assert dead.dead_lettered.last_error.type == "FailError"
    assert dead.dead_lettered.reason == "non-retryable error after attempt 3 of 3"
    setup.apply([dead])
    mission = setup.store.get("m1")
    assert mission is not None
    assert (mission.state, mission.dead_lettered, mission.error.type) == (M.MISSION_STATE_FAILED, True, "FailError")
    assert await setup.reaper.sweep() == 0


async def test_a_last_attempt_failed_on_a_live_session_waits_for_its_worker_to_dead_letter_it(setup: Setup) -> None:
    setup.running("m1", "s-live", attempt=3)
    setup.log.failed("m1", will_retry=False)
    setup.apply()
    setup.beat("s-live")
    setup.silence(1)
    assert await setup.reaper.sweep() == 0


async def test_the_dead_lettered_of_a_lost_attempt_gets_the_same_id_when_the_service_published_only_its_failed(
    setup: Setup,
) -> None:
    setup.running("m1", "s-dead", attempt=3)
    setup.apply()
    setup.silence(60)
    await setup.reaper.sweep()
    failed, dead = setup.published.take()
    setup.apply([failed])  # the replica died before its DEAD_LETTERED...
    assert await setup.reaper.sweep() == 0  # ...which a moment later may still be on its way
    setup.wall.ahead = 11  # 11 s later, it is not
    assert await setup.reaper.sweep() == 1
    (again,) = setup.published.take()
    assert (again.type, again.id) == (E.EVENT_TYPE_DEAD_LETTERED, dead.id)


async def test_missions_on_live_sessions_are_left_alone(setup: Setup) -> None:
    setup.running("live", "s-live")
    setup.running("dead", "s-dead")
    setup.log.created("queued")
    setup.apply()
    setup.beat("s-live")
    setup.beat("s-dead")
    setup.silence(10)
    setup.beat("s-live")
    assert await setup.reaper.sweep() == 1
    assert {event.mission_id for event, _ in setup.published.events} == {"dead"}


async def test_nothing_is_reaped_while_the_registry_has_not_listened_long_enough(setup: Setup) -> None:
    # A restarted service has not heard any heartbeat yet: the sessions may well be alive.
    setup.running("m1", "s-unheard")
    setup.apply()
    setup.silence(15)
    assert await setup.reaper.sweep() == 0
    assert setup.published.events == []
    setup.silence(1)
    assert await setup.reaper.sweep() == 1


async def test_a_running_mission_without_a_session_is_left_alone(setup: Setup) -> None:
    setup.running("m1", "")
    setup.apply()
    setup.silence(3600)
    assert await setup.reaper.sweep() == 0
    assert setup.published.events == []


async def test_a_mission_that_is_no_longer_running_is_left_alone(setup: Setup) -> None:
    setup.running("done", "s-dead")
    setup.log.completed("done")
    setup.running("retrying", "s-dead")
    setup.log.failed("retrying", will_retry=True)
    setup.log.retrying("retrying")
    setup.apply()
    setup.silence(3600)
    assert await setup.reaper.sweep() == 0


async def test_a_reaped_attempt_is_not_reaped_again_once_applied(setup: Setup) -> None:
    setup.running("m1", "s-dead")
    setup.apply()
    setup.silence(60)
    assert await setup.reaper.sweep() == 1
    setup.apply(setup.published.take())
    mission = setup.store.get("m1")
    assert mission is not None
    assert (mission.state, mission.error.type) == (M.MISSION_STATE_RETRYING, "WorkerLost")
    assert await setup.reaper.sweep() == 0
    assert setup.published.events == []


async def test_event_ids_are_deterministic(setup: Setup) -> None:
    setup.running("m1", "s-dead")
    setup.running("m2", "s-dead", attempt=2)
    setup.apply()
    setup.silence(60)
    await setup.reaper.sweep()
    first = [(event.mission_id, event.type, event.id) for event in setup.published.take()]
    await setup.reaper.sweep()  # the store has not changed: a second replica's sweep
    second = [(event.mission_id, event.type, event.id) for event in setup.published.take()]
    assert first == second
    assert len(first) == 4
    assert len({event_id for _, _, event_id in first}) == 4
    # Another replica with its own reaper derives the same ids.
    other = Published()
    await Reaper(setup.store, setup.workers, other, "mission-service/other").sweep()
    assert [(event.mission_id, event.type, event.id) for event, _ in other.events] == first


async def test_event_ids_differ_per_attempt_and_generation(setup: Setup) -> None:
    setup.running("m1", "s-dead")
    setup.apply()
    setup.silence(60)
    await setup.reaper.sweep()
    attempt_one = {event.id for event in setup.published.take()}
    setup.log.failed("m1", will_retry=True)
    setup.log.retrying("m1")
    setup.log.started("m1", attempt=2, session="s-dead")
    setup.apply()
    await setup.reaper.sweep()
    attempt_two = {event.id for event in setup.published.take()}
    setup.log.failed("m1", will_retry=False)
    setup.log.dead_lettered("m1")
    setup.log.redriven("m1")
    setup.log.started("m1", attempt=1, session="s-dead")
    setup.apply()
    mission = setup.store.get("m1")
    assert mission is not None
    assert (mission.state, mission.attempt, mission.redrive_count) == (M.MISSION_STATE_RUNNING, 1, 1)
    await setup.reaper.sweep()
    redriven_one = {event.id for event in setup.published.take()}
    assert len(attempt_one) == len(attempt_two) == len(redriven_one) == 2
    assert not attempt_one & attempt_two
    assert not attempt_one & redriven_one
    assert not attempt_two & redriven_one


async def test_a_just_started_mission_of_an_unknown_session_waits_for_its_first_heartbeat(setup: Setup) -> None:
    """A fresh worker may STARTED a mission before its first heartbeat reached the service."""
    setup.running("m1", "s-new")
    setup.log.events[-1].time.GetCurrentTime()  # started now, by the wall clock
    setup.apply()
    setup.silence(60)  # the registry has listened long enough to judge unknown sessions
    assert await setup.reaper.sweep() == 0
    setup.beat("s-new")
    assert await setup.reaper.sweep() == 0


def _race(setup: Setup) -> None:
    """m1's attempt 1 started by s-a (shown) and, from a copy of its work message, by s-b."""
    setup.running("m1", "s-a")
    setup.log.started("m1", attempt=1, worker_id="worker-s-b", session="s-b")
    setup.apply()
    setup.beat("s-a")
    setup.beat("s-b")


async def test_a_mission_is_not_lost_while_one_of_its_two_starters_is_alive(setup: Setup) -> None:
    _race(setup)
    setup.silence(10)
    setup.beat("s-b")  # the shown session is lost, the other one still runs
    assert await setup.reaper.sweep() == 0
    assert setup.published.events == []
    setup.silence(10)  # now both are lost
    assert await setup.reaper.sweep() == 1
    failed, retry = setup.published.take()
    assert (failed.type, retry.type, failed.mission_id) == (E.EVENT_TYPE_FAILED, E.EVENT_TYPE_RETRYING, "m1")


async def test_a_mission_is_not_lost_while_its_shown_starter_is_alive(setup: Setup) -> None:
    _race(setup)
    setup.silence(10)
    setup.beat("s-a")
    assert await setup.reaper.sweep() == 0


async def test_a_withdrawn_starter_does_not_keep_a_mission_alive(setup: Setup) -> None:
    _race(setup)
    withdrawal = setup.log.started("m1", attempt=1, worker_id="worker-s-b", session="s-b")
    withdrawal.started.withdrawn = True
    setup.apply()
    setup.silence(10)
    setup.beat("s-b")  # alive, but it did not run the attempt
    assert await setup.reaper.sweep() == 1
    assert {event.mission_id for event in setup.published.take()} == {"m1"}
