"""End to end: WatchEvents races and filters against the real service."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from missions.v1 import events_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Stack, payload, watch_events

pytestmark = pytest.mark.e2e

E = events_pb2


async def test_submit_and_watch_at_the_same_instant_never_misses_created_or_the_end(stack: Stack) -> None:
    """200 times: the watch starts while the mission is being submitted and run."""
    await stack.start_service()
    stack.start_worker("--concurrency", "16")

    async def race(n: int) -> list[int]:
        mission = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo", payload=payload(n=n)))).mission
        # The worker may already have finished it, or not started it: either way, the
        # snapshot must hand over to the live stream without losing an event.
        request = pb.WatchEventsRequest(mission_ids=[mission.id])
        return [event.type async for event in watch_events(stack.stub, request)]

    semaphore = asyncio.Semaphore(20)

    async def bounded(n: int) -> list[int]:
        async with semaphore:
            return await race(n)

    results = await asyncio.wait_for(asyncio.gather(*(bounded(n) for n in range(200))), 120)
    expected = [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]
    assert all(kinds == expected for kinds in results), [kinds for kinds in results if kinds != expected][:3]


async def test_filters_by_type_mission_type_and_labels_combine(stack: Stack) -> None:
    # Heartbeats tell a filtered stream that it has seen the whole log up to the head.
    await stack.start_service("--watch-heartbeat", "0.2")
    stack.start_worker()
    submitted = []
    for mission_type, team in (("echo", "payments"), ("echo", "search"), ("noop", "payments")):
        request = pb.SubmitMissionRequest(type=mission_type, labels={"team": team, "env": "test"})
        submitted.append((await stack.stub.SubmitMission(request)).mission)
    for mission in submitted:
        async for _ in watch_events(stack.stub, pb.WatchEventsRequest(mission_ids=[mission.id])):
            pass
    head = (await stack.stub.GetStats(pb.GetStatsRequest())).last_sequence

    async def matching(**filters: Any) -> list[tuple[str, int]]:
        call = stack.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=0, **filters))
        seen: list[tuple[str, int]] = []
        try:
            async with asyncio.timeout(30):
                while True:
                    response = await call.read()
                    if response.HasField("heartbeat") and response.heartbeat.last_sequence >= head:
                        return seen
                    if response.HasField("event"):
                        seen.append((response.event.mission_id, response.event.type))
                        if response.event.sequence >= head:
                            return seen
        finally:
            call.cancel()

    payments_echo, search_echo, payments_noop = (m.id for m in submitted)
    completed = [E.EVENT_TYPE_COMPLETED]
    assert await matching(mission_types=["echo"], types=completed, label_selector="team=payments") == [
        (payments_echo, E.EVENT_TYPE_COMPLETED)
    ]
    by_label = await matching(label_selector="team=payments,env=test", types=completed)
    assert by_label == [(payments_echo, E.EVENT_TYPE_COMPLETED), (payments_noop, E.EVENT_TYPE_COMPLETED)]
    assert await matching(mission_types=["noop"], types=[E.EVENT_TYPE_CREATED]) == [
        (payments_noop, E.EVENT_TYPE_CREATED)
    ]
    assert {mission_id for mission_id, _ in await matching(mission_types=["echo"])} == {payments_echo, search_echo}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await matching(label_selector="team")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
