"""End to end: the service and a worker given two broker nodes (MISSIONS_AMQP_URL lists both)
move on to the second when the first is lost for good, and lose no mission.

The two nodes are loopback TCP proxies to the one real broker (tests/proxy.py), so the
test runs on any machine; a RabbitMQ cluster's nodes are reached the same way.
"""

from __future__ import annotations

import asyncio
import pathlib
import uuid

import grpc
import pytest

from missions.v1 import events_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.proxy import TcpProxy
from tests.support import Stack, watch_events

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

E = events_pb2
_DEADLINE_S = 90


async def _submit(stack: Stack, count: int) -> list[str]:
    """``count`` echo missions, each retried with its idempotency key while the service is
    UNAVAILABLE (its broker connection moving to the other node), as a client would."""
    ids = []
    async with asyncio.timeout(_DEADLINE_S):
        for _ in range(count):
            request = pb.SubmitMissionRequest(type="echo", idempotency_key=uuid.uuid4().hex)
            while True:
                try:
                    ids.append((await stack.stub.SubmitMission(request, timeout=10)).mission.id)
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    await asyncio.sleep(0.2)  # a client's retry pause, not a wait for a state
    return ids


async def _completed(stack: Stack, mission_ids: list[str]) -> set[str]:
    """The missions whose COMPLETED the watch of ``mission_ids`` delivers before it ends (all final)."""
    request = pb.WatchEventsRequest(mission_ids=mission_ids, types=[E.EVENT_TYPE_COMPLETED])
    async with asyncio.timeout(_DEADLINE_S):
        return {event.mission_id async for event in watch_events(stack.stub, request)}


async def test_service_and_worker_move_on_to_the_next_node_when_theirs_is_lost(
    namespace: str, amqp_url: str, tmp_path: pathlib.Path
) -> None:
    async with TcpProxy.for_url(amqp_url) as first, TcpProxy.for_url(amqp_url) as second:
        nodes = f"{first.url(amqp_url)}?reconnect_interval=1,{second.url(amqp_url)}"
        async with Stack(namespace, nodes, tmp_path) as stack:
            await stack.start_service()
            await stack.start_consuming_worker()
            before = await _submit(stack, 10)
            assert await _completed(stack, before) == set(before)
            assert second.accepted == 0  # everything went to the first node

            first.sever()  # the first node is lost, for good
            after = await _submit(stack, 20)
            assert await _completed(stack, after) == set(after)
            assert first.connections == 0 and second.connections > 0
            assert stack.service is not None and stack.service.alive
            assert all(worker.alive for worker in stack.workers)
