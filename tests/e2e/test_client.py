"""End to end: missions.Client and missions.AsyncClient against the real service and workers.

The watch tests check what the client promises: a stream cut by a service restart or by the
service cutting off a slow reader resumes by itself, and the events it delivers are exactly
the log, with nothing lost and nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from missions import errors
from missions.client import AsyncClient, Client, MissionFailed, submit_request
from missions.v1 import events_pb2
from tests.support import Stack, readers_view_of_the_log

pytestmark = pytest.mark.e2e

DEADLINE = 120.0


async def test_submit_then_result_gives_the_result_with_ints_and_failures_as_exceptions(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()

    def use() -> tuple[dict[str, Any], MissionFailed]:
        with Client(stack.target) as client:
            echoed = client.submit("echo", {"fail_times": 2, "ratio": 0.5, "nested": [1, {"n": 3}]})
            result = client.result(echoed.id, timeout=DEADLINE)
            failing = client.submit("fail", {"message": "no", "retryable": False})
            with pytest.raises(MissionFailed) as failed:
                client.result(failing.id, timeout=DEADLINE)
            with pytest.raises(errors.InvalidArgumentError) as refused:
                client.submit("echo", {"text": "x" * 300_000})
            assert refused.value.field == "payload"
            return result, failed.value

    result, failed = await asyncio.to_thread(use)
    assert result == {"fail_times": 2, "ratio": 0.5, "nested": [1, {"n": 3}]}
    assert type(result["fail_times"]) is int
    assert failed.error.message == "no"


class CountWatches(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Counts the WatchEvents calls a client makes: more than one means it resumed."""

    def __init__(self) -> None:
        self.calls = 0

    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        self.calls += 1
        return await continuation(details, request)


class Collector:
    """Reads a client's watch into ``events``; ``paused`` (when clear) stops reading."""

    def __init__(self, events: AsyncIterator[events_pb2.MissionEvent]) -> None:
        self.events: list[events_pb2.MissionEvent] = []
        self.completed: set[str] = set()
        self.paused = asyncio.Event()
        self.paused.set()
        self.changed = asyncio.Condition()
        self._source = events

    async def run(self) -> None:
        async for event in self._source:
            await self.paused.wait()
            async with self.changed:
                self.events.append(event)
                if event.type == events_pb2.EVENT_TYPE_COMPLETED:
                    self.completed.add(event.mission_id)
                self.changed.notify_all()

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE), self.changed:
            await self.changed.wait_for(done)


@contextlib.asynccontextmanager
async def collecting(client: AsyncClient) -> AsyncIterator[Collector]:
    collector = Collector(client.watch(after_sequence=0))
    task = asyncio.create_task(collector.run())
    try:
        yield collector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _assert_exactly_the_log(stack: Stack, collector: Collector) -> None:
    head = collector.events[-1].sequence
    assert [event.sequence for event in collector.events] == await readers_view_of_the_log(stack, head)


async def _submit(client: AsyncClient, count: int) -> set[str]:
    results = await client.submit_many([submit_request("echo", {"n": n}) for n in range(count)])
    assert all(not isinstance(result, Exception) for result in results), results
    return {result.id for result in results if not isinstance(result, Exception)}


async def test_watch_goes_on_across_a_service_restart_with_nothing_lost_and_nothing_twice(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker("--concurrency", "4")
    watches = CountWatches()
    async with AsyncClient(stack.target, interceptors=[watches]) as client, collecting(client) as collector:
        before = await _submit(client, 10)
        await collector.until(lambda: before <= collector.completed)
        assert stack.service is not None
        await asyncio.to_thread(stack.service.stop, signal.SIGKILL)
        await stack.start_service()
        async with AsyncClient(stack.target) as fresh:  # the first channel may still be backing off
            after = await _submit(fresh, 10)
        await collector.until(lambda: after <= collector.completed)
    assert watches.calls >= 2
    await _assert_exactly_the_log(stack, collector)


async def test_a_slow_reader_cut_off_by_the_service_resumes_with_nothing_lost(stack: Stack) -> None:
    # A buffer of 4 events, and events too big for the transport to hold many of them: a
    # reader that pauses while missions run is cut off with RESOURCE_EXHAUSTED.
    await stack.start_service("--watch-buffer", "4")
    stack.start_worker("--concurrency", "4")
    watches = CountWatches()
    async with AsyncClient(stack.target, interceptors=[watches]) as client, collecting(client) as collector:
        first = await _submit(client, 1)
        await collector.until(lambda: first <= collector.completed)
        collector.paused.clear()
        big = "x" * 200_000  # a request holds one such mission at most
        batch = {(await client.submit("echo", {"n": n, "text": big})).id for n in range(30)}
        for mission_id in batch:
            await client.wait(mission_id, timeout=DEADLINE)
        collector.paused.set()
        await collector.until(lambda: batch <= collector.completed)
    assert watches.calls >= 2, "the reader was never cut off: the test proves nothing"
    await _assert_exactly_the_log(stack, collector)
