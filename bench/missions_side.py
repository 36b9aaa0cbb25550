"""Our side: the suite's workloads against a fresh mission-service and its workers, followed through WatchEvents."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc

from bench.limits import Deadline
from bench.measure import cpu_seconds, own_cpu_seconds, pids_named, read_machine, read_process
from bench.stack import running_stack, service_pid, worker_pids
from bench.stats import LATENCY_QUANTILES, latency_figures, percentile
from missions.v1 import events_pb2, mission_service_pb2, mission_service_pb2_grpc
from tests.support import Stack

__all__ = ["EventWatch", "OurStack", "backlog", "latency", "submit_noops", "throughput"]

# Every registered stream answers within this heartbeat, which tells us it is live.
_SERVICE_ARGS = ("--watch-heartbeat", "1")
_NOOP = mission_service_pb2.SubmitMissionRequest(type="noop")
_RPC_TIMEOUT_S = 60
# The broker drops a connection silent for its heartbeat timeout (60 s by default): a paused
# worker's among them, which would then reconnect and spoil the drain figure.
_PAUSE_WARNING_S = 45

Stub = mission_service_pb2_grpc.MissionServiceStub


@dataclass(frozen=True, slots=True)
class OurStack:
    """How each run's fresh stack is started: the broker, and each worker's ``--concurrency``."""

    amqp_url: str
    worker_concurrency: int

    def start(self, workers: int) -> contextlib.AbstractAsyncContextManager[Stack]:
        args = ("--concurrency", str(self.worker_concurrency))
        return running_stack(self.amqp_url, workers=workers, service_args=_SERVICE_ARGS, worker_args=args)


class EventWatch:
    """One live WatchEvents stream of every event, as a dashboard would follow it.

    It counts COMPLETED events and notes when each arrived, so a client can wait for one
    mission (latency) or for a count (throughput).
    """

    def __init__(self, stub: Stub) -> None:
        self._stub = stub
        self.ready = asyncio.Event()
        self.completed = 0
        self.last_completed_at = math.nan  # perf_counter
        self._arrived: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._target = 0
        self._reached = asyncio.Event()
        self._ended: BaseException | None = None

    async def _read(self) -> None:
        try:
            async for response in self._stub.WatchEvents(mission_service_pb2.WatchEventsRequest()):
                self.ready.set()  # an event or the first heartbeat: the stream is registered
                if response.HasField("event") and response.event.type == events_pb2.EVENT_TYPE_COMPLETED:
                    self._on_completed(response.event.mission_id)
            self._ended = RuntimeError("WatchEvents ended")
        except BaseException as exc:
            self._ended = exc
            raise
        finally:
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(RuntimeError("WatchEvents ended"))
            self.ready.set()
            self._reached.set()

    def _on_completed(self, mission_id: str) -> None:
        now = time.perf_counter()
        self.completed += 1
        self.last_completed_at = now
        waiter = self._waiters.pop(mission_id, None)
        if waiter is None:
            self._arrived[mission_id] = now
        elif not waiter.done():
            waiter.set_result(now)
        if self.completed >= self._target:
            self._reached.set()

    async def arrival(self, mission_id: str) -> float:
        """When the mission's COMPLETED arrived (perf_counter), waiting for it if need be."""
        if mission_id in self._arrived:
            return self._arrived.pop(mission_id)
        if self._ended is not None:
            raise RuntimeError("WatchEvents ended early") from self._ended
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters[mission_id] = waiter
        return await waiter

    async def until_completed(self, count: int) -> None:
        """Wait until ``count`` COMPLETED events in all have arrived."""
        self._target = count
        while self.completed < count:
            self._reached.clear()
            if self._ended is not None:
                raise RuntimeError("WatchEvents ended early") from self._ended
            await self._reached.wait()

    @contextlib.asynccontextmanager
    async def running(self, deadline: Deadline) -> AsyncIterator[EventWatch]:
        reader = asyncio.create_task(self._read(), name="watch-events")
        try:
            async with asyncio.timeout(deadline.remaining(30)):
                await self.ready.wait()
            if self._ended is not None:
                raise RuntimeError("WatchEvents failed before it answered") from self._ended
            yield self
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, RuntimeError):
                await reader


async def submit_noops(stub: Stub, count: int, clients: int, batch: int = 0) -> None:
    """Submit ``count`` noop missions from ``clients`` concurrent clients (one channel, HTTP/2 streams),
    one SubmitMission each or, with ``batch``, SubmitMissions calls of up to ``batch``."""
    numbers = iter(range(count))

    async def client() -> None:
        if not batch:
            for _ in numbers:  # one shared iterator: each number is taken once
                await stub.SubmitMission(_NOOP, timeout=_RPC_TIMEOUT_S)
        while chunk := list(itertools.islice(numbers, batch)):
            request = mission_service_pb2.SubmitMissionsRequest(missions=[_NOOP] * len(chunk))
            response = await stub.SubmitMissions(request, timeout=_RPC_TIMEOUT_S)
            refused = [result.error.message for result in response.results if result.HasField("error")]
            if refused:
                raise RuntimeError(f"{len(refused)} missions of a batch refused, e.g. {refused[0]}")

    async with asyncio.TaskGroup() as group:
        for _ in range(clients):
            group.create_task(client())


async def throughput(
    ours: OurStack, *, workers: int, missions: int, clients: int, deadline: Deadline, batch: int = 0
) -> dict[str, float]:
    """Missions/s from the first submit until the watcher has seen every COMPLETED, and the cost per mission."""
    async with (
        ours.start(workers) as stack,
        grpc.aio.insecure_channel(stack.target) as channel,
    ):
        stub = Stub(channel)
        async with EventWatch(stub).running(deadline) as watch:
            service, worker = [service_pid(stack)], worker_pids(stack)
            broker = pids_named("beam.smp")
            cpu_start = [cpu_seconds(service), cpu_seconds(worker), cpu_seconds(broker), own_cpu_seconds()]
            load1 = read_machine().load1
            started = time.perf_counter()
            async with asyncio.timeout(deadline.remaining()):
                await submit_noops(stub, missions, clients, batch)
                await watch.until_completed(missions)
            window = watch.last_completed_at - started
            cpu_end = [cpu_seconds(service), cpu_seconds(worker), cpu_seconds(broker), own_cpu_seconds()]
        stats = await stub.GetStats(mission_service_pb2.GetStatsRequest(), timeout=_RPC_TIMEOUT_S)
        rss_service = read_process(service[0]).hwm_kib
        rss_worker = max(read_process(pid).hwm_kib for pid in worker)
    cpu = [1000 * (end - start) / missions for start, end in zip(cpu_start, cpu_end, strict=True)]
    return {
        "per_s": missions / window,
        "window_s": window,
        "cpu_service_per_1000": cpu[0],
        "cpu_worker_per_1000": cpu[1],
        "cpu_broker_per_1000": cpu[2],
        "cpu_client_per_1000": cpu[3],
        "peak_rss_service_mib": rss_service / 1024,
        "peak_rss_worker_mib": rss_worker / 1024,
        # The namespace is fresh: every event in its log belongs to these missions.
        "events_per_mission": stats.events_read / missions,
        "events_per_record": stats.events_read / max(1, stats.records_read),
        "load1": load1,
    }


async def latency(ours: OurStack, *, missions: int, warmup: int, deadline: Deadline) -> dict[str, float]:
    """Sequential missions, one worker: SubmitMission's round trip, submit -> COMPLETED seen
    on a long-lived WatchEvents of every event, and (``own_*``) on a WatchEvents of the
    mission alone that the client opens once SubmitMission has answered, as ``missionctl
    submit --wait`` does and most clients will."""
    submit: list[float] = []
    done: list[float] = []
    own: list[float] = []
    async with (
        ours.start(1) as stack,
        grpc.aio.insecure_channel(stack.target) as channel,
    ):
        stub = Stub(channel)
        load1 = read_machine().load1
        async with EventWatch(stub).running(deadline) as watch, asyncio.timeout(deadline.remaining()):
            for number in range(warmup + missions):
                started = time.perf_counter()
                response = await stub.SubmitMission(_NOOP, timeout=_RPC_TIMEOUT_S)
                submitted = time.perf_counter()
                seen = await _own_completed(stub, response.mission.id)
                arrived = await watch.arrival(response.mission.id)
                if number >= warmup:
                    submit.append(submitted - started)
                    done.append(arrived - started)
                    own.append(seen - started)
    figures = latency_figures(submit, done)
    figures.update({f"own_p{round(q * 100)}_s": percentile(own, q) for q in LATENCY_QUANTILES})
    return {**figures, "load1": load1}


async def _own_completed(stub: Stub, mission_id: str) -> float:
    """When a WatchEvents of ``mission_id`` alone, opened now, delivered its COMPLETED (perf_counter)."""
    request = mission_service_pb2.WatchEventsRequest(mission_ids=[mission_id])
    async for response in stub.WatchEvents(request, timeout=_RPC_TIMEOUT_S):
        if response.event.type == events_pb2.EVENT_TYPE_COMPLETED:
            return time.perf_counter()
    raise RuntimeError(f"the watch of mission {mission_id} ended before its COMPLETED")


def _signal_all(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        os.kill(pid, signum)


async def backlog(
    ours: OurStack, *, workers: int, depths: Sequence[int], clients: int, deadline: Deadline, batch: int = 0
) -> dict[str, float]:
    """For each depth: queue that many missions behind paused workers, resume them, then time a probe
    mission submitted behind the backlog, and the rate at which the workers drain it.

    The workers are paused with SIGSTOP (and resumed with SIGCONT) rather than started late,
    so the drain rate does not include a worker's start-up; they hold at most their
    prefetch (``--concurrency``) of the backlog meanwhile.
    """
    figures: dict[str, float] = {"load1": read_machine().load1}
    async with (
        ours.start(workers) as stack,
        grpc.aio.insecure_channel(stack.target) as channel,
    ):
        stub = Stub(channel)
        paused = worker_pids(stack)
        async with EventWatch(stub).running(deadline) as watch, asyncio.timeout(deadline.remaining()):
            # One mission first, so the probes do not pay for the stack's first call.
            await watch.arrival((await stub.SubmitMission(_NOOP, timeout=_RPC_TIMEOUT_S)).mission.id)
            total = 1
            for depth in depths:
                _signal_all(paused, signal.SIGSTOP)
                stopped = time.perf_counter()
                try:
                    await submit_noops(stub, depth, clients, batch)
                finally:
                    _signal_all(paused, signal.SIGCONT)
                resumed = time.perf_counter()  # also when the probe's SubmitMission starts
                if resumed - stopped > _PAUSE_WARNING_S:
                    paused_s = resumed - stopped
                    print(f"warning: workers paused {paused_s:.0f} s, near the heartbeat timeout", file=sys.stderr)
                response = await stub.SubmitMission(_NOOP, timeout=_RPC_TIMEOUT_S)
                figures[f"probe_depth_{depth}_s"] = await watch.arrival(response.mission.id) - resumed
                total += depth + 1
                await watch.until_completed(total)
                if depth:
                    figures[f"drain_depth_{depth}_per_s"] = (depth + 1) / (watch.last_completed_at - resumed)
    return figures
