"""How late delayed missions start: N missions due within the same second.
`python -m bench.delayed [--missions N] [--lead S] [--instant]`

One service and two workers (64 run slots each) in a namespace of their own. N ``noop``
missions are submitted (SubmitMissions, 500 a call) with due times spread evenly over one
second that begins ``--lead`` seconds after the first submission (with ``--instant``, all
due at the same instant). Once every one has SUCCEEDED, two lateness figures per mission:
*fired*, from its due time to its DUE event (the service's scheduler), and *started*, from
its due time to its STARTED (the worker's, so the work queue and the worker are in it).
Each as p50/p90/p99/max in milliseconds. Every process runs on this machine, so the
clocks agree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence

import grpc
from google.protobuf import timestamp_pb2

from bench.measure import describe_machine
from bench.stack import DEFAULT_AMQP_URL, running_stack
from bench.stats import percentile
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2, mission_service_pb2_grpc
from tests.support import eventually, watch_events

__all__ = ["main"]

pb = mission_service_pb2
_BATCH = 500
_TIMEOUT_S = 600.0


def _stamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _figures(late_s: Sequence[float]) -> dict[str, float]:
    quantiles = {f"p{round(q * 100)}": percentile(late_s, q) for q in (0.5, 0.9, 0.99)}
    return {name: round(value * 1000, 1) for name, value in {**quantiles, "max": max(late_s)}.items()}


async def _lateness(
    stub: mission_service_pb2_grpc.MissionServiceStub, due: dict[str, int], kind: events_pb2.EventType.ValueType
) -> list[float]:
    """Seconds from each mission's due time to its first event of ``kind``, read from the log."""
    found: dict[str, float] = {}
    request = pb.WatchEventsRequest(after_sequence=0, types=[kind])
    async for event in watch_events(stub, request):
        if event.mission_id in due and event.mission_id not in found:
            found[event.mission_id] = (event.time.ToNanoseconds() - due[event.mission_id]) / 1e9
            if len(found) == len(due):
                break
    return list(found.values())


async def run(missions: int, lead: float, instant: bool) -> dict[str, object]:
    async with (
        running_stack(DEFAULT_AMQP_URL, workers=2, worker_args=("--concurrency", "64")) as stack,
        grpc.aio.insecure_channel(stack.target) as channel,
    ):
        stub = mission_service_pb2_grpc.MissionServiceStub(channel)
        start = time.time() + lead
        due: dict[str, int] = {}
        requests = [
            pb.SubmitMissionRequest(type="noop", due_time=_stamp(start if instant else start + index / missions))
            for index in range(missions)
        ]
        for first in range(0, missions, _BATCH):
            batch = pb.SubmitMissionsRequest(missions=requests[first : first + _BATCH])
            for result in (await stub.SubmitMissions(batch, timeout=_TIMEOUT_S)).results:
                due[result.mission.id] = result.mission.due_time.ToNanoseconds()
        submitted = time.time()
        if submitted >= start:
            raise SystemExit(f"submitting took {submitted - start + lead:.1f} s, past --lead {lead}: raise it")

        async def all_succeeded() -> bool:
            stats: pb.GetStatsResponse = await stub.GetStats(pb.GetStatsRequest())
            counts = {count.state: count.count for count in stats.states}
            return counts.get(mission_pb2.MISSION_STATE_SUCCEEDED, 0) >= missions

        await eventually(all_succeeded, "every mission to succeed", timeout=_TIMEOUT_S)
        fired = await _lateness(stub, due, events_pb2.EVENT_TYPE_DUE)
        started = await _lateness(stub, due, events_pb2.EVENT_TYPE_STARTED)
    return {
        "machine": describe_machine(),
        "missions": missions,
        "due": "at one instant" if instant else "spread over one second",
        "fired after due (DUE), ms": _figures(fired),
        "started after due (STARTED), ms": _figures(started),
        "started before due": sum(late < 0 for late in started),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--missions", type=int, default=1000)
    parser.add_argument("--lead", type=float, default=10.0, help="seconds from submission to the due second")
    parser.add_argument("--instant", action="store_true", help="every mission due at the same instant")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.missions, args.lead, args.instant)), indent=2))


if __name__ == "__main__":
    main()
