"""End to end: a live WatchEvents stream broken mid-way resumes with exactly the missing events.

Missions keep running while the stream is cut (by the client, by a killed connection,
by a crashed service), so events are produced during every gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from missions.v1 import events_pb2, mission_service_pb2_grpc
from missions.v1 import mission_service_pb2 as pb
from tests.proxy import TcpProxy
from tests.support import Stack, payload, readers_view_of_the_log, watch_events

pytestmark = pytest.mark.e2e

MISSIONS = 40


@contextlib.asynccontextmanager
async def _channel(target: str) -> AsyncIterator[mission_service_pb2_grpc.MissionServiceStub]:
    # A subchannel of its own: channels to one target share gRPC's global subchannels, so a
    # new channel could inherit a connection the proxy severed under the one before (seen
    # once under load: the resumed call failed at once with "Broken pipe").
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        yield mission_service_pb2_grpc.MissionServiceStub(channel)


class Follower:
    """Reads the whole log from the start across interruptions, resuming after the last
    sequence it saw, and records every event it received."""

    def __init__(self) -> None:
        self.events: list[events_pb2.MissionEvent] = []
        self.completed: set[str] = set()

    @property
    def position(self) -> int:
        return self.events[-1].sequence if self.events else 0

    async def read(
        self, stub: mission_service_pb2_grpc.MissionServiceStub, stop: Callable[[], bool], timeout: float = 60
    ) -> None:
        """Follow from ``position`` until ``stop()`` is true after an event (then cancel the call)."""
        request = pb.WatchEventsRequest(after_sequence=self.position)
        async with asyncio.timeout(timeout), contextlib.aclosing(watch_events(stub, request)) as events:
            async for event in events:
                self._take(event)
                if stop():
                    return

    def _take(self, event: events_pb2.MissionEvent) -> None:
        self.events.append(event)
        if event.type == events_pb2.EVENT_TYPE_COMPLETED:
            self.completed.add(event.mission_id)


async def _submit_steadily(stub: mission_service_pb2_grpc.MissionServiceStub, count: int) -> list[str]:
    """Submit ``count`` sleep missions one after another, so events keep coming."""
    ids = []
    for number in range(count):
        request = pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=0.05, n=number))
        ids.append((await stub.SubmitMission(request, timeout=30)).mission.id)
    return ids


async def _assert_exactly_the_log(stack: Stack, follower: Follower) -> None:
    """What the follower pieced together is the log itself: every event up to head, once each, same events."""
    head = follower.position
    assert [event.sequence for event in follower.events] == await readers_view_of_the_log(stack, head)
    assert follower.events[-1].sequence == head
    replay: list[events_pb2.MissionEvent] = []
    async for event in watch_events(stack.stub, pb.WatchEventsRequest(after_sequence=0)):
        replay.append(event)
        if event.sequence == head:
            break
    assert replay == follower.events


async def test_resume_after_a_cancelled_call_and_a_killed_connection_gets_exactly_the_missing_events(
    stack: Stack,
) -> None:
    await stack.start_service()
    stack.start_worker("--concurrency", "4")
    follower = Follower()
    async with TcpProxy("127.0.0.1", stack.port) as proxy:
        submitting = asyncio.create_task(_submit_steadily(stack.stub, MISSIONS))
        async with _channel(f"127.0.0.1:{proxy.port}") as proxied:
            # 1. The client cancels its call mid-stream.
            await follower.read(proxied, lambda: len(follower.completed) >= 5)

            # 2. The network drops the connection mid-stream.
            def cut_later() -> bool:
                if len(follower.completed) >= 15 and not proxy.severed:
                    proxy.sever()
                return False

            with pytest.raises(grpc.aio.AioRpcError) as broken:
                await follower.read(proxied, cut_later)
            assert broken.value.code() == grpc.StatusCode.UNAVAILABLE
        proxy.restore()
        mission_ids = await submitting
        # 3. Resumed (on a new connection) after the last sequence it saw, it reads on to the end.
        async with _channel(f"127.0.0.1:{proxy.port}") as proxied:
            await follower.read(proxied, lambda: follower.completed >= set(mission_ids))
    await _assert_exactly_the_log(stack, follower)


async def test_resume_against_a_restarted_service_gets_exactly_the_missing_events(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker("--concurrency", "4")
    follower = Follower()
    submitting = asyncio.create_task(_submit_steadily(stack.stub, MISSIONS // 2))
    await follower.read(stack.stub, lambda: len(follower.completed) >= 5)
    assert stack.service is not None
    await asyncio.to_thread(stack.service.stop, signal.SIGKILL)
    with contextlib.suppress(grpc.aio.AioRpcError):
        await submitting  # submissions fail while the service is down
    await stack.start_service()
    # Missions accepted before the crash kept running on the worker; more come now. A new
    # channel: the old one may be backing off after its failed calls.
    async with _channel(stack.target) as stub:
        more = await _submit_steadily(stub, MISSIONS // 2)
        await follower.read(stub, lambda: set(more) <= follower.completed)
    await _assert_exactly_the_log(stack, follower)
