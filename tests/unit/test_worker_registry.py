"""WorkerRegistry: worker sessions and their states, derived from heartbeats and a clock."""

from __future__ import annotations

from datetime import timedelta

from google.protobuf import duration_pb2

from mission_service.worker_registry import WorkerRegistry
from missions.v1 import worker_pb2

W = worker_pb2


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _heartbeat(
    worker_id: str = "w1",
    session: str = "s1",
    interval_s: float = 2.0,
    state: worker_pb2.WorkerState.ValueType = W.WORKER_STATE_ACTIVE,
) -> worker_pb2.Worker:
    interval = duration_pb2.Duration()
    interval.FromTimedelta(timedelta(seconds=interval_s))
    return W.Worker(
        id=worker_id, session=session, host="h", pid=42, concurrency=4, heartbeat_interval=interval, state=state
    )


def _states(registry: WorkerRegistry, include_gone: bool = False) -> list[tuple[str, str, int]]:
    return [(worker.id, worker.session, worker.state) for worker in registry.list(include_gone)]


def test_a_heartbeat_lists_the_worker_active() -> None:
    registry = WorkerRegistry(Clock())
    heartbeat = _heartbeat()
    registry.record(heartbeat)
    [listed] = registry.list()
    assert listed == heartbeat
    assert registry.active() == 1
    assert not registry.is_lost("s1")


def test_active_by_type_counts_the_active_workers_that_list_each_type() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    assert registry.active_by_type() == {}
    for worker_id, types in (("w1", ["echo", "resize"]), ("w2", ["echo", "echo"]), ("w3", ["sleep"])):
        heartbeat = _heartbeat(worker_id, session=worker_id)
        heartbeat.handler_types.extend(types)
        registry.record(heartbeat)
    assert registry.active_by_type() == {"echo": 2, "resize": 1, "sleep": 1}
    stopping = _heartbeat("w3", session="w3", state=W.WORKER_STATE_STOPPING)
    stopping.handler_types.append("sleep")
    registry.record(stopping)
    assert registry.active_by_type() == {"echo": 2, "resize": 1}
    clock.advance(6.5)  # three 2-second intervals of silence: every worker is lost
    assert registry.active_by_type() == {}


def test_list_returns_copies() -> None:
    registry = WorkerRegistry(Clock())
    registry.record(_heartbeat())
    registry.list()[0].state = W.WORKER_STATE_LOST
    assert _states(registry) == [("w1", "s1", W.WORKER_STATE_ACTIVE)]


def test_a_worker_is_lost_after_three_intervals_of_silence() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    registry.record(_heartbeat(interval_s=2.0))
    clock.advance(6.0)
    assert not registry.is_lost("s1")
    assert _states(registry) == [("w1", "s1", W.WORKER_STATE_ACTIVE)]
    clock.advance(0.5)
    assert registry.is_lost("s1")
    assert _states(registry) == [("w1", "s1", W.WORKER_STATE_LOST)]
    assert registry.active() == 0


def test_a_heartbeat_brings_a_lost_worker_back() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    registry.record(_heartbeat(interval_s=2.0))
    clock.advance(10.0)
    assert registry.is_lost("s1")
    registry.record(_heartbeat(interval_s=2.0))
    assert not registry.is_lost("s1")
    assert registry.active() == 1


def test_a_heartbeat_without_an_interval_uses_the_default_of_five_seconds() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    registry.record(_heartbeat(interval_s=0))
    clock.advance(15.0)
    assert not registry.is_lost("s1")
    clock.advance(0.5)
    assert registry.is_lost("s1")


def test_a_stopping_worker_is_shown_stopping_then_lost_when_silent() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    registry.record(_heartbeat(state=W.WORKER_STATE_STOPPING))
    assert _states(registry) == [("w1", "s1", W.WORKER_STATE_STOPPING)]
    assert registry.active() == 0
    assert not registry.is_lost("s1")
    clock.advance(7.0)
    assert _states(registry) == [("w1", "s1", W.WORKER_STATE_LOST)]


def test_gone_workers_are_hidden_after_ten_minutes_unless_asked_for() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    registry.record(_heartbeat("lost", "s-lost"))
    registry.record(_heartbeat("stopping", "s-stop", state=W.WORKER_STATE_STOPPING))
    clock.advance(600.0)
    registry.record(_heartbeat("alive", "s-alive"))
    both_gone = [("lost", "s-lost", W.WORKER_STATE_LOST), ("stopping", "s-stop", W.WORKER_STATE_LOST)]
    assert _states(registry) == [("alive", "s-alive", W.WORKER_STATE_ACTIVE), *both_gone]
    clock.advance(1.0)
    assert _states(registry) == [("alive", "s-alive", W.WORKER_STATE_ACTIVE)]
    assert _states(registry, include_gone=True) == [("alive", "s-alive", W.WORKER_STATE_ACTIVE), *both_gone]


def test_a_stopping_worker_that_keeps_beating_is_hidden_after_ten_minutes_of_silence_only() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    for _ in range(400):  # 20 minutes of STOPPING heartbeats: still heard from
        clock.advance(3.0)
        registry.record(_heartbeat(state=W.WORKER_STATE_STOPPING, interval_s=5.0))
    assert _states(registry) == [("w1", "s1", W.WORKER_STATE_STOPPING)]


def test_workers_silent_for_an_hour_are_forgotten() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    registry.record(_heartbeat("old", "s-old"))
    clock.advance(1800.0)
    registry.record(_heartbeat("newer", "s-newer"))
    clock.advance(1800.0)
    assert [worker.id for worker in registry.list(include_gone=True)] == ["newer", "old"]
    clock.advance(1.0)
    assert [worker.id for worker in registry.list(include_gone=True)] == ["newer"]
    # Forgotten is still lost.
    assert registry.is_lost("s-old")


def test_an_unknown_session_is_lost_only_once_the_registry_has_listened_for_15_seconds() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    assert not registry.is_lost("never-heard")
    clock.advance(15.0)
    assert not registry.is_lost("never-heard")
    clock.advance(0.5)
    assert registry.is_lost("never-heard")
    assert registry.list(include_gone=True) == []


def test_sessions_of_one_restarted_worker_are_listed_separately() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    registry.record(_heartbeat("w1", "session-b"))
    registry.record(_heartbeat("w0", "session-z"))
    clock.advance(10.0)
    registry.record(_heartbeat("w1", "session-a"))  # the restart, same --worker-id
    assert _states(registry) == [
        ("w0", "session-z", W.WORKER_STATE_LOST),
        ("w1", "session-a", W.WORKER_STATE_ACTIVE),
        ("w1", "session-b", W.WORKER_STATE_LOST),
    ]
    assert registry.is_lost("session-b")
    assert not registry.is_lost("session-a")
    assert registry.active() == 1


def test_a_heartbeat_without_a_session_is_keyed_by_worker_id() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    registry.record(_heartbeat("w1", session=""))
    registry.record(_heartbeat("w1", session=""))
    assert _states(registry) == [("w1", "", W.WORKER_STATE_ACTIVE)]
    assert not registry.is_lost("w1")


def test_the_latest_heartbeat_of_a_session_wins() -> None:
    registry = WorkerRegistry(Clock())
    registry.record(_heartbeat())
    update = _heartbeat()
    update.running = 3
    update.finished = 17
    registry.record(update)
    [listed] = registry.list()
    assert (listed.running, listed.finished) == (3, 17)


def test_silence_while_the_service_itself_was_disconnected_is_excused() -> None:
    clock = Clock()
    registry = WorkerRegistry(clock)
    registry.record(_heartbeat(session="s1", interval_s=2.0))
    clock.now += 30  # the service's own connection was down: no heartbeat could arrive
    assert registry.is_lost("s1") and registry.is_lost("never-heard")
    registry.excuse()
    assert not registry.is_lost("s1")
    assert not registry.is_lost("never-heard")
    clock.now += 14  # workers reconnect on their own schedule: a grace of 15 s
    assert not registry.is_lost("s1")
    clock.now += 1.5
    assert registry.is_lost("s1")  # still unheard after the grace
