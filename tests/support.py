"""Helpers for tests that run the real processes: start, wait for health, stop, watch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mission_service.store import MissionStore
from missions import amqp
from missions.eventlog import read_log
from missions.topology import Topology
from missions.v1 import events_pb2, mission_service_pb2, mission_service_pb2_grpc

__all__ = [
    "Process",
    "Stack",
    "collect",
    "drain",
    "eventually",
    "free_port",
    "payload",
    "readers_view_of_the_log",
    "wait_serving",
    "wait_serving_on",
    "watch_events",
]


async def readers_view_of_the_log(stack: Stack, up_to: int) -> list[int]:
    """The sequences a reader of the log must see, up to ``up_to``: every event of the raw
    log but those the projection records as duplicates (MissionStore, as every replica
    folds it), which no reader sees. So a watcher's sequences equal to these miss nothing."""
    store = MissionStore(":memory:")
    events: list[events_pb2.MissionEvent] = []
    connection = await amqp.connect(stack.amqp_url, "test readers' view")
    async with connection, contextlib.aclosing(read_log(connection, Topology(stack.namespace), 0)) as log:
        async with asyncio.timeout(60):
            async for event in log:
                if event.sequence > up_to:
                    break
                events.append(event)
                if event.sequence == up_to:
                    break
    duplicates = store.apply_batch(events)
    store.close()
    return [event.sequence for event in events if event.sequence not in duplicates]


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30, interval: float = 0.1
) -> None:
    """Ask ``check`` every ``interval`` seconds until it holds: for a state that has no event
    to wait on (a broker's counters, heartbeats, another process's reload). AssertionError
    naming ``what`` if it does not hold within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                if await check():
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout:g}s") from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def rabbitmqctl(*args: str, timeout: float = 120) -> str:
    """Run ``rabbitmqctl ARGS`` (stdin closed: it would otherwise read it); its output, or
    an AssertionError with it if the command failed."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            output, errors = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"rabbitmqctl {' '.join(args)} failed:\n{text}{errors.decode(errors='replace')}"
    return text


def payload(**values: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


@dataclass
class Process:
    """One real mission-service or mission-worker process, with its output in a file."""

    argv: Sequence[str]
    env: dict[str, str]
    log_path: pathlib.Path
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", *self.argv],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; returns its exit code."""
        assert self.popen is not None
        return self.popen.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process and wait for it; returns its exit code."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            raise

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


async def wait_serving(target: str, process: Process, timeout: float = 30) -> None:
    """Wait until the service's health check says SERVING (fail if it does not in time)."""
    async with grpc.aio.insecure_channel(target) as channel:
        await wait_serving_on(channel, process, timeout)


async def wait_serving_on(channel: grpc.aio.Channel, process: Process, timeout: float = 30) -> None:
    """wait_serving over a given channel (TLS, say)."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            # wait_for_ready rides out "connection refused" until the port is bound, and
            # Health.Watch pushes status changes: no polling.
            request = health_pb2.HealthCheckRequest()
            async for response in stub.Watch(request, timeout=max(remaining, 0.1), wait_for_ready=True):
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.aio.AioRpcError as exc:
            # A connection dropped while the process starts (a loaded machine, a port just
            # freed by a killed predecessor) is worth another Watch while time remains.
            retry = exc.code() == grpc.StatusCode.UNAVAILABLE and process.alive and remaining > 1
            if not retry:
                raise AssertionError(f"service not SERVING ({exc.code().name}):\n{process.output()}") from exc
            continue
        raise AssertionError(f"health stream ended before SERVING:\n{process.output()}")


async def watch_events(
    stub: mission_service_pb2_grpc.MissionServiceStub, request: mission_service_pb2.WatchEventsRequest
) -> AsyncGenerator[events_pb2.MissionEvent, None]:
    """The events of a WatchEvents stream, without its idle heartbeats."""
    async for item in stub.WatchEvents(request):
        if item.HasField("event"):
            yield item.event


async def collect(
    stub: mission_service_pb2_grpc.MissionServiceStub,
    request: mission_service_pb2.WatchEventsRequest,
    queue: asyncio.Queue[events_pb2.MissionEvent],
) -> None:
    """Pump a WatchEvents stream into ``queue`` until it ends."""
    async for event in watch_events(stub, request):
        await queue.put(event)


@contextlib.asynccontextmanager
async def watching(
    stub: mission_service_pb2_grpc.MissionServiceStub, request: mission_service_pb2.WatchEventsRequest
) -> AsyncIterator[asyncio.Queue[events_pb2.MissionEvent]]:
    """The events of a WatchEvents stream, pumped into a queue while the block runs."""
    queue: asyncio.Queue[events_pb2.MissionEvent] = asyncio.Queue()
    task = asyncio.create_task(collect(stub, request, queue))
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await task


async def drain(
    queue: asyncio.Queue[events_pb2.MissionEvent], until: Iterable[str], timeout: float = 60
) -> AsyncIterator[events_pb2.MissionEvent]:
    """Yield events from ``queue`` until every mission in ``until`` has emitted its final event."""
    pending = set(until)
    final = {events_pb2.EVENT_TYPE_COMPLETED, events_pb2.EVENT_TYPE_CANCELLED, events_pb2.EVENT_TYPE_DEAD_LETTERED}
    async with asyncio.timeout(timeout):
        while pending:
            event = await queue.get()
            if event.type in final:
                pending.discard(event.mission_id)
            yield event


@dataclass
class Stack:
    """A namespace's mission-service and workers, started as real processes."""

    namespace: str
    amqp_url: str
    directory: pathlib.Path
    port: int = field(default_factory=free_port)
    service: Process | None = None
    workers: list[Process] = field(default_factory=list)
    _channel: grpc.aio.Channel | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "MISSIONS_AMQP_URL": self.amqp_url,
            "MISSIONS_NAMESPACE": self.namespace,
            "MISSIONS_LISTEN": self.target,
            "MISSIONS_STATE_DIR": str(self.directory / "state"),
        }

    async def start_service(self, *args: str) -> Process:
        self.service = Process(["mission_service", *args], self.env(), self.directory / "service.log").start()
        await wait_serving(self.target, self.service)
        return self.service

    def start_worker(self, *args: str) -> Process:
        name = f"worker-{len(self.workers)}"
        worker = Process(
            ["worker_service", "--worker-id", name, *args], self.env(), self.directory / f"{name}.log"
        ).start()
        self.workers.append(worker)
        return worker

    async def start_consuming_worker(self, *args: str) -> Process:
        """start_worker, then wait until its health says it consumes its work queues: work
        submitted after that can go to it, not only to the workers that were there first."""
        port = free_port()
        worker = self.start_worker("--health-listen", f"127.0.0.1:{port}", *args)
        await wait_serving(f"127.0.0.1:{port}", worker)
        return worker

    @property
    def stub(self) -> mission_service_pb2_grpc.MissionServiceStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target)
        return mission_service_pb2_grpc.MissionServiceStub(self._channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the stub's channel and kill every process the stack started."""
        if self._channel is not None:
            await self._channel.close()
        for process in [*self.workers, *([self.service] if self.service else [])]:
            process.kill()
