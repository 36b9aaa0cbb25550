"""End to end: the broker link breaks (a cut connection, a restarted broker) and both processes recover.

Every process reaches RabbitMQ through a loopback TCP proxy (tests/proxy.py) that the
test severs and restores; the broker-restart test stops the real broker app instead.
Health is watched through Health.Watch streams and missions through WatchEvents, so
every wait is on an event; the only sleeps hold an outage open.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.proxy import TcpProxy
from tests.support import (
    Process,
    Stack,
    eventually,
    free_port,
    payload,
    rabbitmqctl,
    wait_serving,
    watch_events,
)

pytestmark = pytest.mark.e2e

E = events_pb2
M = mission_pb2
FINAL_EVENT_TYPES = {E.EVENT_TYPE_COMPLETED, E.EVENT_TYPE_CANCELLED, E.EVENT_TYPE_DEAD_LETTERED}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

WORKER_HEALTH_SERVICE = "missions.v1.Worker"
# How long a process whose health stream ended has to exit before the stream is watched again.
_EXIT_GRACE_S = 2.0
# A robust connection retries every 5 s (aio-pika's reconnect_interval): allow a few rounds.
RECOVERY_TIMEOUT = 45.0


class HealthWatch:
    """One Health.Watch stream pumped into a queue, so a test can await each status change."""

    def __init__(self, target: str, process: Process, service: str = "") -> None:
        self.target = target
        self.process = process
        self.service = service
        self.last: int | None = None
        self._statuses: asyncio.Queue[int | grpc.aio.AioRpcError] = asyncio.Queue()
        self._channel: grpc.aio.Channel | None = None
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HealthWatch:
        self._channel = grpc.aio.insecure_channel(self.target)
        self._pump = asyncio.create_task(self._run(health_pb2_grpc.HealthStub(self._channel)))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._channel is not None:
            await self._channel.close()

    async def _run(self, stub: health_pb2_grpc.HealthStub) -> None:
        request = health_pb2.HealthCheckRequest(service=self.service)
        while True:
            try:
                async for response in stub.Watch(request, wait_for_ready=True):
                    await self._statuses.put(response.status)
            except grpc.aio.AioRpcError as exc:
                # A stream the transport dropped is watched again, as any health client
                # would; one whose process has exited ends the watch (and fails the test).
                if exc.code() == grpc.StatusCode.UNAVAILABLE and not await self._exited(_EXIT_GRACE_S):
                    print(f"health stream of {self.target} ended ({exc.code().name}) while it runs: watching again")
                    continue
                await self._statuses.put(exc)
                return

    async def _exited(self, within: float) -> bool:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, within)
        return not self.process.alive

    async def until(self, status: int, timeout: float) -> None:
        """Wait until the watched server reports ``status`` (at once if it is the current one)."""
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        try:
            async with asyncio.timeout(timeout):
                while self.last != status:
                    item = await self._statuses.get()
                    if isinstance(item, grpc.aio.AioRpcError):
                        why = "its process is still running" if self.process.alive else "its process exited"
                        ended = f"health stream of {self.target} ended with {item.code().name} ({why})"
                        raise AssertionError(f"{ended}:\n{_tail(self.process.output())}")
                    self.last = item
        except TimeoutError:
            exited = "" if self.process.alive else " (its process has exited)"
            raise AssertionError(
                f"{self.target} not {name} within {timeout:g}s{exited}:\n{_tail(self.process.output())}"
            ) from None


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Member:
    """A started process with the address of its health service."""

    process: Process
    health_target: str
    health_service: str = ""

    def watch(self) -> HealthWatch:
        return HealthWatch(self.health_target, self.process, self.health_service)


class FaultStack(Stack):
    """A Stack whose workers serve health checks, so tests can watch them go down and up."""

    async def start_service_member(self, *args: str) -> Member:
        return Member(await self.start_service(*args), self.target)

    async def start_worker_member(self, *args: str) -> Member:
        port = free_port()
        process = self.start_worker("--health-listen", f"127.0.0.1:{port}", *args)
        target = f"127.0.0.1:{port}"
        await wait_serving(target, process)
        return Member(process, target, WORKER_HEALTH_SERVICE)


@pytest.fixture
async def direct(namespace: str, amqp_url: str, tmp_path: pathlib.Path) -> AsyncIterator[FaultStack]:
    async with FaultStack(namespace, amqp_url, tmp_path) as stack:
        yield stack


@contextlib.asynccontextmanager
async def watching_health(members: Sequence[Member]) -> AsyncIterator[list[HealthWatch]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(member.watch()) for member in members]


async def all_reach(watches: Iterable[HealthWatch], status: int, timeout: float) -> None:
    await asyncio.gather(*(watch.until(status, timeout) for watch in watches))


class LogWatch:
    """WatchEvents(after_sequence=0) on a fresh namespace, pumped for the whole test: the log as it grows.

    One long-lived stream rather than one per wait, because a client cancelling a stream
    while the service closes its replay channel can cost the service its log connection
    (RabbitMQ answers 504 CHANNEL_ERROR), which is not what these tests are about. It
    keeps running counts, so waiting on them costs nothing per event.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.events: list[E.MissionEvent] = []
        self.started = 0  # STARTED events
        self.finals: Counter[str] = Counter()  # final events (COMPLETED, CANCELLED, DEAD_LETTERED) per mission
        self.error: grpc.aio.AioRpcError | None = None
        self._changed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    @property
    def last_sequence(self) -> int:
        return self.events[-1].sequence if self.events else 0

    async def __aenter__(self) -> LogWatch:
        self._pump = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def _run(self) -> None:
        try:
            async for item in self.stack.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=0)):
                event = item.event
                self.events.append(event)
                if event.type == E.EVENT_TYPE_STARTED:
                    self.started += 1
                elif event.type in FINAL_EVENT_TYPES:
                    self.finals[event.mission_id] += 1
                self._changed.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
            self._changed.set()

    async def wait(self, done: Callable[[], bool], what: str, timeout: float) -> None:
        """Wait until ``done()`` holds; fail naming ``what`` if the stream ends or time runs out."""
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    if self.error is not None:
                        raise AssertionError(f"event stream ended ({self.error.code().name}) before {what}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout:g}s ({len(self.events)} events so far)") from None

    async def until_started(self, count: int, timeout: float = 30) -> None:
        await self.wait(lambda: self.started >= count, f"{count} STARTED", timeout)

    async def until_final(self, mission_ids: Collection[str], timeout: float) -> None:
        """Wait until every mission of ``mission_ids`` has a final event; on a timeout, show the others."""
        try:
            await self.wait(lambda: all(mission_id in self.finals for mission_id in mission_ids), "", timeout)
        except AssertionError:
            unfinished = [mission_id for mission_id in mission_ids if mission_id not in self.finals]
            raise AssertionError(
                f"{len(unfinished)} missions not final within {timeout:g}s, for example:\n"
                + describe(self.events, unfinished[:5])
            ) from None

    async def through(self, sequence: int, timeout: float = 60) -> list[E.MissionEvent]:
        """Every event up to ``sequence``, in the order delivered."""
        await self.wait(lambda: self.last_sequence >= sequence, f"sequence {sequence}", timeout)
        return [event for event in self.events if event.sequence <= sequence]


async def assert_the_log_replays_alike(stack: Stack, seen: Sequence[E.MissionEvent]) -> None:
    """What a live watcher ``seen`` from sequence 0 is what a replay of the log shows now, up to
    the same event: strictly increasing sequences, none lost or repeated. (Not 1..N: the log's
    duplicate records are skipped, guarantees.md.)"""
    sequences = [event.sequence for event in seen]
    assert sequences == sorted(set(sequences)), "the watch repeated or reordered events"
    replayed: list[tuple[int, str]] = []
    async with asyncio.timeout(60):
        async for event in watch_events(stack.stub, pb.WatchEventsRequest(after_sequence=0)):
            replayed.append((event.sequence, event.id))
            if event.sequence >= sequences[-1]:
                break
    assert replayed == [(event.sequence, event.id) for event in seen], "a watch and a replay of the log differ"


async def submit_all(stack: Stack, requests: Sequence[pb.SubmitMissionRequest]) -> list[M.Mission]:
    return [(await stack.stub.SubmitMission(request, timeout=30)).mission for request in requests]


async def assert_submit_unavailable(stack: Stack) -> None:
    """SubmitMission during an outage fails with UNAVAILABLE: refused, rather than held until
    the client's deadline (which would be DEADLINE_EXCEEDED)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        accepted = await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"), timeout=15)
        pytest.fail(f"SubmitMission returned OK during the outage: {accepted.mission.id}")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value


async def watch_to_the_end(stack: Stack, log: LogWatch, mission_ids: Sequence[str], timeout: float = 90) -> None:
    """WatchEvents(mission_ids), read until the service ends it (each mission final), never cancelled early.

    On a timeout the failure lists the missions still unfinished, with their events.
    """
    try:
        async with asyncio.timeout(timeout):
            async for _ in stack.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=mission_ids)):
                pass
    except TimeoutError:
        unfinished = [mission_id for mission_id in mission_ids if mission_id not in log.finals]
        raise AssertionError(
            f"{len(unfinished)} missions not final within {timeout:g}s:\n{describe(log.events, unfinished[:5])}"
        ) from None


async def assert_all_succeed_once(stack: Stack, log: LogWatch, missions: Sequence[M.Mission]) -> list[E.MissionEvent]:
    """Each of ``missions`` ends SUCCEEDED, with exactly one COMPLETED event id in a gap-free log; returns the log."""
    ids = [mission.id for mission in missions]
    await watch_to_the_end(stack, log, ids)
    last = 0
    for mission in missions:
        final = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
        assert final.state == M.MISSION_STATE_SUCCEEDED, final
        last = max(last, final.last_sequence)
    events = await log.through(last)
    await assert_the_log_replays_alike(stack, events)
    # A publish retried after a lost confirm can log the same event id twice (guarantees.md):
    # "ran once" means one distinct COMPLETED id per mission.
    completed_ids = {event.id: event.mission_id for event in events if event.type == E.EVENT_TYPE_COMPLETED}
    completed = Counter(completed_ids.values())
    wrong = {mission_id: completed[mission_id] for mission_id in ids if completed[mission_id] != 1}
    assert not wrong, f"COMPLETED event ids per mission should be 1: {wrong}\n{describe(events, wrong)}"
    return events


def describe(log: Sequence[E.MissionEvent], mission_ids: Iterable[str]) -> str:
    """The events of ``mission_ids`` in log order, one line each, for failure messages."""
    wanted = set(mission_ids)
    by_mission: dict[str, list[str]] = defaultdict(list)
    for event in log:
        if event.mission_id in wanted:
            kind = E.EventType.Name(event.type).removeprefix("EVENT_TYPE_")
            by_mission[event.mission_id].append(
                f"  #{event.sequence} {kind} attempt {event.attempt} from {event.source} id {event.id}"
            )
    return "\n".join(f"{mission_id}:\n" + "\n".join(lines) for mission_id, lines in by_mission.items())


def _batch(sleeps: int, echoes: int, seconds: float = 0.5) -> list[pb.SubmitMissionRequest]:
    return [
        *(pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=seconds, n=i)) for i in range(sleeps)),
        *(pb.SubmitMissionRequest(type="echo", payload=payload(n=i)) for i in range(echoes)),
    ]


@pytest.mark.timeout(180)
async def test_cut_connection_flips_health_refuses_submissions_and_loses_nothing(
    proxy: TcpProxy, proxied: FaultStack
) -> None:
    service = await proxied.start_service_member()
    workers = [await proxied.start_worker_member("--heartbeat-interval", "1") for _ in range(2)]
    async with watching_health([service, *workers]) as health, LogWatch(proxied) as log:
        await all_reach(health, SERVING, 30)
        missions = await submit_all(proxied, _batch(sleeps=30, echoes=5))
        await log.until_started(4)  # some missions are running, most are queued

        proxy.sever()
        await all_reach(health, NOT_SERVING, 15)
        await assert_submit_unavailable(proxied)
        proxy.restore()
        await all_reach(health, SERVING, RECOVERY_TIMEOUT)

        await assert_all_succeed_once(proxied, log, missions)


@contextlib.asynccontextmanager
async def broker_stopped() -> AsyncIterator[None]:
    """Stop the RabbitMQ app for the block; it is always started again and awaited."""
    try:
        await rabbitmqctl("stop_app")
        yield
    finally:
        await rabbitmqctl("start_app")
        await rabbitmqctl("await_startup")


@pytest.mark.broker_restart
@pytest.mark.timeout(240)
async def test_broker_app_restart_both_processes_reconnect_and_finish_the_work(direct: FaultStack) -> None:
    service = await direct.start_service_member()
    workers = [await direct.start_worker_member("--heartbeat-interval", "1") for _ in range(2)]
    async with watching_health([service, *workers]) as health, LogWatch(direct) as log:
        await all_reach(health, SERVING, 30)
        # Accepted means confirmed by the broker: durable in the log and in the work queue.
        missions = await submit_all(direct, _batch(sleeps=30, echoes=5))
        await log.until_started(4)

        async with broker_stopped():
            await all_reach(health, NOT_SERVING, 30)
            await assert_submit_unavailable(direct)
        await all_reach(health, SERVING, RECOVERY_TIMEOUT)

        await assert_all_succeed_once(direct, log, missions)


@pytest.mark.timeout(120)
async def test_outcome_of_an_attempt_running_through_an_outage_is_published_after_it(
    proxy: TcpProxy, proxied: FaultStack
) -> None:
    service = await proxied.start_service_member()
    # Heartbeats every 5 s: lost after 15 s of silence, longer than this outage and the reconnection.
    worker = await proxied.start_worker_member("--heartbeat-interval", "5")
    async with watching_health([service, worker]) as health, LogWatch(proxied) as log:
        await all_reach(health, SERVING, 30)
        mission = (
            await proxied.stub.SubmitMission(pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=1.0)))
        ).mission
        # A PROGRESS event proves the worker holds the STARTED confirm and the handler runs (a cut
        # between STARTED reaching the log and its confirm would leave the attempt to a redelivery).
        progressing = lambda: any(event.type == E.EVENT_TYPE_PROGRESS for event in log.events)  # noqa: E731
        await log.wait(progressing, "PROGRESS", 30)
        proxy.sever()
        await all_reach(health, NOT_SERVING, 15)
        await asyncio.sleep(3)  # the outage outlasts the handler's second
        proxy.restore()
        await all_reach(health, SERVING, RECOVERY_TIMEOUT)

        events = await assert_all_succeed_once(proxied, log, [mission])
    # The attempt's events waited in the worker's retrying publisher while the broker was away ...
    assert f"of mission {mission.id} not confirmed" in worker.process.output()
    # ... and the attempt that ran through the outage is the one that completed.
    kinds = [event.type for event in events if event.type != E.EVENT_TYPE_PROGRESS]
    assert kinds == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED], describe(events, [mission.id])


async def _idle_worker(stack: Stack, worker_id: str, since: float, timeout: float = 60) -> None:
    """Wait for a heartbeat of ``worker_id`` sent after ``since`` (epoch seconds) that reports nothing running.

    Heartbeats have no watch stream, so this polls ListWorkers.
    """

    async def idle() -> bool:
        return any(
            worker.id == worker_id and worker.heartbeat_time.ToNanoseconds() > since * 1e9 and not worker.running
            for worker in (await stack.stub.ListWorkers(pb.ListWorkersRequest())).workers
        )

    await eventually(idle, f"{worker_id} idle after {since}", timeout, interval=0.2)


@pytest.mark.timeout(120)
async def test_a_worker_cut_off_until_declared_lost_does_not_publish_its_lost_attempts_outcome(
    amqp_url: str, direct: FaultStack
) -> None:
    """Only the worker's own link breaks; the service, still connected, declares the attempt lost.

    The attempt times out during the outage, so its outcome waits in the worker's retrying publisher;
    by the time the link is back the attempt is over (WorkerLost, and with one attempt
    allowed, DEAD_LETTERED), so that outcome must not reach the log.
    """
    service = await direct.start_service_member()
    async with TcpProxy.for_url(amqp_url) as link:
        worker = await direct.start_worker_member(
            "--amqp-url", link.url(amqp_url), "--heartbeat-interval", "1", "--cancel-grace", "0"
        )
        async with watching_health([service, worker]) as health, LogWatch(direct) as log:
            await all_reach(health, SERVING, 30)
            # Progress every second; the 2 s timeout ends the attempt a second into the outage.
            request = pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=10), max_attempts=1)
            request.timeout.FromSeconds(2)
            mission = (await direct.stub.SubmitMission(request)).mission
            # A PROGRESS event proves the handler runs (the worker holds the STARTED confirm).
            progressing = lambda: any(event.type == E.EVENT_TYPE_PROGRESS for event in log.events)  # noqa: E731
            await log.wait(progressing, "PROGRESS", 30)
            link.sever()
            await health[1].until(NOT_SERVING, 15)
            await log.until_final([mission.id], timeout=30)  # the service's WorkerLost + DEAD_LETTERED
            link.restore()
            await health[1].until(SERVING, RECOVERY_TIMEOUT)
            await _idle_worker(direct, "worker-0", since=time.time())
            # Anything the worker published before going idle precedes this probe in the log.
            probe = (await direct.stub.SubmitMission(pb.SubmitMissionRequest(type="noop"))).mission
            events = await log.through(probe.last_sequence)
    history = describe(events, [mission.id])
    assert log.finals[mission.id] == 1, f"one terminal event expected:\n{history}"
    failed = [event for event in events if event.mission_id == mission.id and event.type == E.EVENT_TYPE_FAILED]
    assert [event.failed.error.type for event in failed] == ["WorkerLost"], f"one outcome per attempt:\n{history}"
