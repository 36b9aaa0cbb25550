"""How long the bulk operations on dead letters take.
`python -m bench.dead_letters [--missions N]`

One service and one worker in a namespace of their own. N ``fail`` missions that fail
their first attempt (max_attempts 1) become N dead letters; then, each timed from the
call to its answer: a dry run of RedriveDeadLetters, RedriveDeadLetters (its answer
comes once every REDRIVEN is in this replica's read model and every work message is
confirmed), and the time until the worker has run every redriven mission to SUCCEEDED.
Then N more dead letters, and PurgeDeadLetters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import grpc

from bench.measure import describe_machine
from bench.stack import DEFAULT_AMQP_URL, running_stack
from missions.v1 import mission_pb2, mission_service_pb2, mission_service_pb2_grpc
from tests.support import eventually, payload

__all__ = ["main"]

pb = mission_service_pb2
_BATCH = 500
_TIMEOUT_S = 600.0


async def _dead_letters(stub: mission_service_pb2_grpc.MissionServiceStub, count: int) -> None:
    """Submit ``count`` missions that fail their one attempt, and wait until each is a dead letter."""
    fail_once = pb.SubmitMissionRequest(type="fail", payload=payload(fail_times=1), max_attempts=1)
    for start in range(0, count, _BATCH):
        size = min(_BATCH, count - start)
        await stub.SubmitMissions(pb.SubmitMissionsRequest(missions=[fail_once] * size), timeout=_TIMEOUT_S)
    await _until(stub, lambda stats: stats.dead_letter_depth >= count)


async def _until(
    stub: mission_service_pb2_grpc.MissionServiceStub, holds: Callable[[pb.GetStatsResponse], bool]
) -> None:
    """Poll GetStats until ``holds``: the counts have no event to wait on."""

    async def check() -> bool:
        return holds(await stub.GetStats(pb.GetStatsRequest()))

    await eventually(check, "the stats to hold", timeout=_TIMEOUT_S, interval=0.05)


async def _timed(call: Awaitable[object]) -> float:
    """Seconds from the call to its answer."""
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


async def run(missions: int) -> dict[str, object]:
    async with (
        running_stack(DEFAULT_AMQP_URL, workers=1, worker_args=("--concurrency", "16")) as stack,
        grpc.aio.insecure_channel(stack.target) as channel,
    ):
        stub = mission_service_pb2_grpc.MissionServiceStub(channel)
        await _dead_letters(stub, missions)
        dry = await _timed(stub.RedriveDeadLetters(pb.RedriveDeadLettersRequest(dry_run=True), timeout=_TIMEOUT_S))
        started = time.perf_counter()
        redrive = await _timed(
            stub.RedriveDeadLetters(pb.RedriveDeadLettersRequest(max_attempts=2), timeout=_TIMEOUT_S)
        )

        def all_succeeded(stats: pb.GetStatsResponse) -> bool:
            counts = {count.state: count.count for count in stats.states}
            return counts.get(mission_pb2.MISSION_STATE_SUCCEEDED, 0) >= missions

        await _until(stub, all_succeeded)
        ran = time.perf_counter() - started
        await _dead_letters(stub, missions)
        purge = await _timed(stub.PurgeDeadLetters(pb.PurgeDeadLettersRequest(), timeout=_TIMEOUT_S))
        await _until(stub, lambda stats: stats.dead_letter_depth == 0)
    return {
        "machine": describe_machine(),
        "dead letters": missions,
        "dry run, s": round(dry, 3),
        "RedriveDeadLetters, s": round(redrive, 3),
        "redriven per s": round(missions / redrive),
        "redrive until all SUCCEEDED, s": round(ran, 3),
        "PurgeDeadLetters, s": round(purge, 3),
        "purged per s": round(missions / purge),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--missions", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.missions)), indent=2))


if __name__ == "__main__":
    main()
