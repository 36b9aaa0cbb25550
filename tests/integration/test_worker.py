"""Integration: the worker's consumption path (run slots, look-ahead, settling) on the real RabbitMQ.

The worker runs in this process (``run_worker``) with handlers of the test's own that
block until the test releases them; missions are submitted as the service does (CREATED
into the log, then its work message dispatched), and what happened is read back from the
log and from the broker's queue depths.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from mission_service.follower import LogFollower
from mission_service.start_verdicts import StartVerdictSender
from mission_service.store import MissionStore
from missions.amqp import message_counts
from missions.eventlog import EventPublisher, read_log
from missions.events import new_event, now
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from tests.support import eventually
from worker_service import app, consumer
from worker_service.app import run_worker
from worker_service.context import MissionContext
from worker_service.handlers.registry import HandlerRegistry
from worker_service.ledger import DEFAULT_REMEMBER_FINISHED, MissionLedger
from worker_service.settings import WorkerSettings

pytestmark = pytest.mark.integration

E = events_pb2
M = mission_pb2

# Generous: the machine may be busy; nothing here waits this long when all is well.
_DEADLINE_S = 45


class Log:
    """The namespace's event log as read so far, to wait on."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.events: list[events_pb2.MissionEvent] = []
        self._publisher = publisher
        self._changed = asyncio.Condition()

    async def pump(self, connection: AbstractRobustConnection, names: Topology) -> None:
        async with contextlib.aclosing(read_log(connection, names, 0)) as events:
            async for event in events:
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(_DEADLINE_S), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(f"the log never showed {what}") from None

    def of(self, mission: M.Mission, kind: events_pb2.EventType.ValueType) -> list[events_pb2.MissionEvent]:
        return [event for event in self.events if event.mission_id == mission.id and event.type == kind]

    async def completed(self, *missions: M.Mission) -> None:
        await self.wait_for(
            lambda: all(self.of(mission, E.EVENT_TYPE_COMPLETED) for mission in missions),
            f"COMPLETED for {len(missions)} missions",
        )

    async def read_up_to_now(self) -> None:
        """Wait until the log has been read past everything confirmed before this call."""
        marker = _created(_mission("noop"))
        await self._publisher.publish(marker)  # into the log only: never dispatched
        await self.wait_for(lambda: any(event.id == marker.id for event in self.events), "the marker")


Follow = Callable[[], Awaitable[None]]


@pytest.fixture
async def follow(
    connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> AsyncIterator[Follow]:
    """Starts the service's log follower (once ``publisher`` has declared the topology),
    which answers the worker's STARTED events: without it no attempt starts."""
    names = Topology(namespace)
    store = MissionStore(":memory:")
    following: list[asyncio.Task[None]] = []

    async def start() -> None:
        verdicts = StartVerdictSender(connection, names)
        follower = LogFollower(functools.partial(read_log, connection, names), store, lambda _: None, verdicts=verdicts)
        following.append(asyncio.create_task(follower.run()))

    yield start
    for task in following:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    store.close()


@pytest.fixture(autouse=True)
async def answered(follow: Follow, request: pytest.FixtureRequest) -> None:
    """A service answers from the start, unless the test is marked ``unanswered``."""
    if request.node.get_closest_marker("unanswered") is None:
        await follow()


@pytest.fixture
async def log(connection: AbstractRobustConnection, publisher: EventPublisher, namespace: str) -> AsyncIterator[Log]:
    log = Log(publisher)
    pump = asyncio.create_task(log.pump(connection, Topology(namespace)))
    yield log
    pump.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pump


@dataclass
class Blocker:
    """A handler that blocks until ``released``, counting how many of its calls run at once."""

    released: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Queue[str] = field(default_factory=asyncio.Queue)  # mission ids, as they start
    running: int = 0
    most: int = 0

    async def handle(self, ctx: MissionContext, payload: Any) -> dict[str, Any]:
        self.running += 1
        self.most = max(self.most, self.running)
        self.entered.put_nowait(ctx.mission_id)
        try:
            await self.released.wait()
        finally:
            self.running -= 1
        return {"done": True}

    async def next_entered(self) -> str:
        async with asyncio.timeout(_DEADLINE_S):
            return await self.entered.get()

    def registry(self) -> HandlerRegistry:
        """A registry with this blocker as the handler of "sleep"."""
        registry = HandlerRegistry()
        registry.register("sleep", self.handle)
        return registry


async def _instant(ctx: MissionContext, payload: Any) -> dict[str, Any]:
    return {}


@dataclass
class Worker:
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def stopped(self) -> None:
        self.stop.set()
        async with asyncio.timeout(_DEADLINE_S):
            await self.task


@contextlib.asynccontextmanager
async def _running_worker(
    settings: WorkerSettings, registry: HandlerRegistry, *blockers: Blocker
) -> AsyncIterator[Worker]:
    """``run_worker`` in this process until the block ends; then its blockers are released and it stops."""
    stop = asyncio.Event()
    worker = Worker(stop, asyncio.create_task(run_worker(settings, stop, registry=registry)))
    try:
        yield worker
    finally:
        for blocker in blockers:
            blocker.released.set()
        await worker.stopped()  # raises what the worker died of, if it did


def _settings(namespace: str, amqp_url: str, concurrency: int, **overrides: Any) -> WorkerSettings:
    return WorkerSettings(
        amqp_url=amqp_url,
        namespace=namespace,
        worker_id=f"test-worker-{uuid.uuid4().hex[:8]}",
        concurrency=concurrency,
        heartbeat_interval=timedelta(milliseconds=100),
        drain_timeout=timedelta(seconds=_DEADLINE_S),
        **overrides,
    )


def _mission(mission_type: str) -> M.Mission:
    return M.Mission(
        id=str(uuid.uuid4()),
        type=mission_type,
        priority=M.PRIORITY_NORMAL,
        state=M.MISSION_STATE_QUEUED,
        max_attempts=3,
        create_time=now(),
        correlation_id=uuid.uuid4().hex,
    )


def _created(mission: M.Mission) -> events_pb2.MissionEvent:
    event = new_event(mission, E.EVENT_TYPE_CREATED, source="test", correlation_id=mission.correlation_id)
    event.created.mission.CopyFrom(mission)
    return event


async def _submit(publisher: EventPublisher, mission_type: str) -> M.Mission:
    """Submit a mission as the service does: CREATED confirmed in the log, then its work message."""
    mission = _mission(mission_type)
    created = _created(mission)
    await publisher.publish(created, priority=mission.priority)
    await publisher.dispatch(created, priority=mission.priority)
    return mission


async def _cancel(publisher: EventPublisher, mission: M.Mission) -> None:
    """Cancel a queued mission as the service does: a CANCELLED event in the log (and the control stream)."""
    event = new_event(mission, E.EVENT_TYPE_CANCELLED, source="test", correlation_id=mission.correlation_id)
    event.cancelled.reason = "no longer wanted"
    event.cancelled.cancelled_by = "test"
    event.cancelled.previous_state = M.MISSION_STATE_QUEUED
    await publisher.publish(event)


async def _ready_until(
    connection: AbstractRobustConnection, queue: str, expected: int, check: Callable[[int], None] = lambda _: None
) -> None:
    """Poll the queue's ready count until it is ``expected``; ``check`` sees every count observed on the way."""

    async def reached() -> bool:
        (count,) = await message_counts(connection, [queue])
        check(count)
        return count == expected

    await eventually(reached, f"{queue} holding {expected} ready messages", _DEADLINE_S, interval=0.05)


def _watch_cancellations(monkeypatch: pytest.MonkeyPatch) -> defaultdict[str, asyncio.Event]:
    """Per mission id, an event set once the worker's ledger has read its CANCELLED."""
    seen: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    class WatchedLedger(MissionLedger):
        def __init__(self, remember_finished: int = DEFAULT_REMEMBER_FINISHED) -> None:
            super().__init__(remember_finished)
            self.on_cancel(lambda event: seen[event.mission_id].set())

    monkeypatch.setattr(app, "MissionLedger", WatchedLedger)
    return seen


class Heartbeats:
    """The ``last_delivery_time`` of each heartbeat on the namespace's workers exchange."""

    def __init__(self) -> None:
        self.deliveries: set[int] = set()  # distinct last delivery times, ns
        self._changed = asyncio.Condition()

    async def listen(self, connection: AbstractRobustConnection, names: Topology) -> None:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(names.workers_exchange)
        await queue.consume(self._on_heartbeat, no_ack=True)

    async def _on_heartbeat(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        worker = worker_pb2.Worker.FromString(message.body)
        if worker.HasField("last_delivery_time"):
            async with self._changed:
                self.deliveries.add(worker.last_delivery_time.ToNanoseconds())
                self._changed.notify_all()

    async def deliveries_after(self, since_ns: int, count: int) -> None:
        """Wait until heartbeats have shown ``count`` distinct deliveries later than ``since_ns``."""
        try:
            async with asyncio.timeout(_DEADLINE_S), self._changed:
                await self._changed.wait_for(lambda: len([t for t in self.deliveries if t > since_ns]) >= count)
        except TimeoutError:
            raise AssertionError(f"heartbeats never showed {count} deliveries") from None


@pytest.mark.timeout(120)
async def test_at_most_concurrency_run_and_as_many_more_wait_unacked(
    connection: AbstractRobustConnection, publisher: EventPublisher, log: Log, namespace: str, amqp_url: str
) -> None:
    queue = Topology(namespace).work_queue("sleep")
    blocker = Blocker()
    async with _running_worker(_settings(namespace, amqp_url, concurrency=2), blocker.registry(), blocker):
        missions = [await _submit(publisher, "sleep") for _ in range(6)]
        await blocker.next_entered()
        await blocker.next_entered()

        def look_ahead_at_most_2(ready: int) -> None:
            assert ready >= 2, f"the worker took more than 2 running + 2 waiting: {ready} of 6 left ready"
            assert blocker.running == 2

        # 6 - 2 running (acked at STARTED) - 2 waiting for a slot (unacked, the prefetch).
        await _ready_until(connection, queue, 2, look_ahead_at_most_2)
        assert blocker.entered.empty(), "a third handler started while two were running"

        blocker.released.set()
        await log.completed(*missions)
    await log.read_up_to_now()
    assert blocker.most == 2
    for mission in missions:
        assert len(log.of(mission, E.EVENT_TYPE_STARTED)) == 1
        assert len(log.of(mission, E.EVENT_TYPE_COMPLETED)) == 1
    assert await message_counts(connection, [queue]) == [0]


@pytest.mark.timeout(120)
async def test_a_delivery_cancelled_while_it_waits_for_a_slot_is_dropped_unstarted(
    connection: AbstractRobustConnection,
    publisher: EventPublisher,
    log: Log,
    namespace: str,
    amqp_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = Topology(namespace).work_queue("sleep")
    cancellations = _watch_cancellations(monkeypatch)
    blocker = Blocker()
    async with _running_worker(_settings(namespace, amqp_url, concurrency=1), blocker.registry(), blocker):
        a = await _submit(publisher, "sleep")
        assert await blocker.next_entered() == a.id
        b = await _submit(publisher, "sleep")
        await _ready_until(connection, queue, 0)  # B delivered: waiting for the slot A holds

        await _cancel(publisher, b)
        async with asyncio.timeout(_DEADLINE_S):
            await cancellations[b.id].wait()  # the worker's ledger has read it
        blocker.released.set()
        # With a prefetch of 1, C is delivered only once B's delivery is settled.
        c = await _submit(publisher, "sleep")
        await log.completed(a, c)
    await log.read_up_to_now()
    assert not log.of(b, E.EVENT_TYPE_STARTED)
    assert [len(log.of(mission, E.EVENT_TYPE_STARTED)) for mission in (a, c)] == [1, 1]
    assert await message_counts(connection, [queue]) == [0]  # B acked, not handed back


@pytest.mark.timeout(120)
async def test_stopping_hands_a_waiting_delivery_back_at_once_and_drains_the_running_one(
    connection: AbstractRobustConnection, publisher: EventPublisher, log: Log, namespace: str, amqp_url: str
) -> None:
    queue = Topology(namespace).work_queue("sleep")
    blocker = Blocker()
    async with _running_worker(_settings(namespace, amqp_url, concurrency=1), blocker.registry(), blocker) as worker:
        a = await _submit(publisher, "sleep")
        assert await blocker.next_entered() == a.id
        b = await _submit(publisher, "sleep")
        await _ready_until(connection, queue, 0)  # B delivered: waiting for the slot A holds

        worker.stop.set()
        await _ready_until(connection, queue, 1)  # B back in the queue while A still runs
        assert blocker.running == 1
        assert not worker.task.done()

        blocker.released.set()
        await worker.stopped()
    await log.read_up_to_now()
    assert len(log.of(a, E.EVENT_TYPE_STARTED)) == 1
    assert len(log.of(a, E.EVENT_TYPE_COMPLETED)) == 1
    assert not log.of(b, E.EVENT_TYPE_STARTED)
    assert await message_counts(connection, [queue]) == [1]


@pytest.mark.parametrize("narrowed_by", ["settings", "registry"])
@pytest.mark.timeout(120)
async def test_a_worker_leaves_the_work_of_types_it_does_not_serve_in_their_queue(
    connection: AbstractRobustConnection,
    publisher: EventPublisher,
    log: Log,
    namespace: str,
    amqp_url: str,
    narrowed_by: str,
) -> None:
    names = Topology(namespace)
    registry = HandlerRegistry()
    registry.register("echo", _instant)
    if narrowed_by == "settings":
        registry.register("report", _instant)  # loaded, but not served
        settings = _settings(namespace, amqp_url, concurrency=2, mission_types=("echo",))
    else:
        settings = _settings(namespace, amqp_url, concurrency=2)
    async with _running_worker(settings, registry):
        others = [await _submit(publisher, "report") for _ in range(3)]
        served = [await _submit(publisher, "echo") for _ in range(3)]
        await log.completed(*served)
        assert await message_counts(connection, [names.work_queue("report"), names.work_queue("echo")]) == [3, 0]
    await log.read_up_to_now()
    for mission in others:
        assert [event.type for event in log.events if event.mission_id == mission.id] == [E.EVENT_TYPE_CREATED]
    assert await message_counts(connection, [names.work_queue("report"), names.dead_letter_queue]) == [3, 0]


@pytest.mark.timeout(120)
async def test_a_delivery_held_past_the_hold_limit_goes_back_and_later_runs_once(
    connection: AbstractRobustConnection,
    publisher: EventPublisher,
    log: Log,
    namespace: str,
    amqp_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer, "_HOLD_LIMIT_S", 0.3)
    heartbeats = Heartbeats()
    await heartbeats.listen(connection, Topology(namespace))
    blocker = Blocker()
    async with _running_worker(_settings(namespace, amqp_url, concurrency=1), blocker.registry(), blocker):
        a = await _submit(publisher, "sleep")
        assert await blocker.next_entered() == a.id
        before_b = time.time_ns()  # every delivery from now on is B's
        b = await _submit(publisher, "sleep")
        # Two deliveries of B: it was handed back (nacked) past the hold limit, and came again.
        await heartbeats.deliveries_after(before_b, 2)
        assert blocker.running == 1 and blocker.entered.empty()

        blocker.released.set()
        await log.completed(a, b)
    await log.read_up_to_now()
    assert len(log.of(b, E.EVENT_TYPE_STARTED)) == 1
    assert len(log.of(b, E.EVENT_TYPE_COMPLETED)) == 1
    assert await message_counts(connection, [Topology(namespace).work_queue("sleep")]) == [0]


@pytest.mark.unanswered
@pytest.mark.timeout(120)
async def test_while_no_service_answers_a_started_mission_waits_and_runs_once_one_does(
    connection: AbstractRobustConnection,
    publisher: EventPublisher,
    log: Log,
    namespace: str,
    amqp_url: str,
    follow: Follow,
) -> None:
    ran: list[str] = []

    async def record(ctx: MissionContext, payload: Any) -> dict[str, Any]:
        ran.append(ctx.mission_id)
        return {}

    registry = HandlerRegistry()
    registry.register("noop", record)
    async with _running_worker(_settings(namespace, amqp_url, concurrency=1), registry):
        mission = await _submit(publisher, "noop")
        # A second STARTED of the same session: the worker heard nothing and asked again.
        await log.wait_for(lambda: len(log.of(mission, E.EVENT_TYPE_STARTED)) >= 2, "the worker asking again")
        assert ran == [] and not log.of(mission, E.EVENT_TYPE_COMPLETED)

        await follow()
        await log.completed(mission)
    await log.read_up_to_now()
    assert ran == [mission.id]
    assert len(log.of(mission, E.EVENT_TYPE_COMPLETED)) == 1
    sessions = {event.started.worker_session for event in log.of(mission, E.EVENT_TYPE_STARTED)}
    assert len(sessions) == 1
