"""End to end: one idempotency key is one mission, one CREATED and one run, however many
concurrent submissions race for it on however many replicas."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest

from missions.v1 import events_pb2, mission_pb2, mission_service_pb2_grpc
from missions.v1 import mission_service_pb2 as pb
from tests.support import Process, Stack, free_port, payload, wait_serving, watch_events

pytestmark = pytest.mark.e2e

E = events_pb2
M = mission_pb2

HANDLERS = ("--handlers", "builtin,tests.e2e.handlers")
WORKER = (*HANDLERS, "--heartbeat-interval", "0.5")
TIMEOUT = 60


@contextlib.asynccontextmanager
async def second_replica(stack: Stack) -> AsyncIterator[mission_service_pb2_grpc.MissionServiceStub]:
    """Another mission-service on the stack's namespace, with a state directory of its own."""
    port = free_port()
    env = {**stack.env(), "MISSIONS_LISTEN": f"127.0.0.1:{port}", "MISSIONS_STATE_DIR": str(stack.directory / "b")}
    replica = Process(["mission_service"], env, stack.directory / "replica.log").start()
    try:
        await wait_serving(f"127.0.0.1:{port}", replica)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield mission_service_pb2_grpc.MissionServiceStub(channel)
    finally:
        replica.kill()


async def _history(stub: mission_service_pb2_grpc.MissionServiceStub, mission_id: str) -> list[E.MissionEvent]:
    """Every event of the mission from its start, until its final one (a replay, then live)."""
    request = pb.WatchEventsRequest(mission_ids=[mission_id])
    async with asyncio.timeout(TIMEOUT):
        return [event async for event in watch_events(stub, request)]


def _runs(tally: pathlib.Path) -> collections.Counter[str]:
    """How many times the tally handler ran each mission."""
    lines = tally.read_text().split() if tally.exists() else []
    return collections.Counter(lines[::2])


def _stop(workers: list[Process]) -> None:
    """Stop the workers and wait for them: after this no handler can run any more."""
    for worker in workers:
        assert worker.stop() == 0, worker.output()


async def test_concurrent_submissions_of_one_key_across_two_replicas_create_and_run_one_mission(
    stack: Stack,
) -> None:
    await stack.start_service()
    workers = [stack.start_worker(*WORKER) for _ in range(2)]
    tally = stack.directory / "tally"
    mission_ids = []
    async with second_replica(stack) as other:
        for round_ in range(20):
            request = pb.SubmitMissionRequest(
                type="tally", payload=payload(path=str(tally)), idempotency_key=f"race-{round_}"
            )
            stubs = [stack.stub, other] * 10
            async with asyncio.timeout(TIMEOUT):
                answers = await asyncio.gather(*(stub.SubmitMission(request) for stub in stubs))
            assert len({answer.mission.id for answer in answers}) == 1, f"round {round_}"
            mission_ids.append(answers[0].mission.id)
        for mission_id in mission_ids:
            for stub in (stack.stub, other):
                kinds = [event.type for event in await _history(stub, mission_id)]
                assert kinds == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED], mission_id
    _stop(workers)
    assert _runs(tally) == {mission_id: 1 for mission_id in mission_ids}


async def test_different_concurrent_requests_with_one_key_have_one_winner_across_replicas(stack: Stack) -> None:
    await stack.start_service()
    async with second_replica(stack) as other:
        stubs = [stack.stub, other] * 5
        requests = [
            pb.SubmitMissionRequest(type="echo", payload=payload(n=n), idempotency_key="contested")
            for n in range(len(stubs))
        ]
        async with asyncio.timeout(TIMEOUT):
            outcomes = await asyncio.gather(
                *(stub.SubmitMission(request) for stub, request in zip(stubs, requests, strict=True)),
                return_exceptions=True,
            )
        winners = [outcome.mission for outcome in outcomes if isinstance(outcome, pb.SubmitMissionResponse)]
        losers = [outcome for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)]
        # Each request differs (its payload): exactly one is the mission the log kept.
        assert len(winners) == 1 and len(losers) == len(stubs) - 1, outcomes
        assert {loser.code() for loser in losers} == {grpc.StatusCode.ALREADY_EXISTS}
        for stub in (stack.stub, other):
            kept = (await stub.GetMission(pb.GetMissionRequest(mission_id=winners[0].id))).mission
            assert kept.payload == winners[0].payload


async def test_retrying_the_submission_of_a_queued_mission_fifty_times_runs_it_once(stack: Stack) -> None:
    await stack.start_service()
    # Both consuming before the blockers come: a worker started late would leave the second
    # blocker waiting in the first one's look-ahead, and the test waiting for it to start.
    workers = [await stack.start_consuming_worker(*WORKER, "--concurrency", "1") for _ in range(2)]
    tally, opened = stack.directory / "tally", stack.directory / "open"
    async with second_replica(stack) as other:
        # Both workers busy, so the keyed mission stays QUEUED while its submission is retried.
        blockers = [
            (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="gate", payload=payload(path=str(opened)))))
            for _ in workers
        ]
        async with asyncio.timeout(TIMEOUT):
            for blocker in blockers:
                async for event in watch_events(stack.stub, pb.WatchEventsRequest(mission_ids=[blocker.mission.id])):
                    if event.type == E.EVENT_TYPE_STARTED:
                        break
        request = pb.SubmitMissionRequest(type="tally", payload=payload(path=str(tally)), idempotency_key="retried")
        states = []
        for stub in [stack.stub, other] * 25:
            states.append((await stub.SubmitMission(request, timeout=TIMEOUT)).mission.state)
        assert states == [M.MISSION_STATE_QUEUED] * 50
        mission_id = (await stack.stub.SubmitMission(request, timeout=TIMEOUT)).mission.id
        opened.touch()
        kinds = [event.type for event in await _history(other, mission_id)]
        assert kinds == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]
    _stop(workers)
    assert _runs(tally) == {mission_id: 1}
