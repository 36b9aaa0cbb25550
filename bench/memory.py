"""The service's memory over a long run: `python -m bench.memory`.

Runs ``--missions`` noop missions through a fresh stack (one mission-service, one
mission-worker with ``--concurrency 8``, one live WatchEvents subscriber of every event,
as in bench.suite), ``--step`` at a time from 16 clients (SubmitMissions batches of
``--batch``; 0 for single SubmitMission calls), and reads the service's and the worker's
resident memory (VmRSS, /proc) after each step, once every mission of it is COMPLETED
on the watch. What a replica keeps grows until its bounded parts are full (the window of
recent events, SQLite's page cache, allocator arenas) and must then stay flat: the
figure is the highest RSS after ``--warmup`` missions over the lowest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys

import grpc

from bench.limits import Deadline
from bench.measure import describe_machine, read_process
from bench.missions_side import EventWatch, OurStack, Stub, submit_noops
from bench.stack import DEFAULT_AMQP_URL, service_pid, worker_pids

__all__ = ["main"]


async def _run(args: argparse.Namespace) -> list[dict[str, float]]:
    """One sample per step: missions done so far, the service's and the worker's RSS in MiB."""
    deadline = Deadline.after(args.timeout)
    samples: list[dict[str, float]] = []
    async with (
        OurStack(args.amqp_url, 8).start(1) as stack,
        grpc.aio.insecure_channel(stack.target) as channel,
    ):
        stub = Stub(channel)
        async with EventWatch(stub).running(deadline) as watch:
            service, (worker,) = service_pid(stack), worker_pids(stack)
            done = 0
            while done < args.missions:
                step = min(args.step, args.missions - done)
                async with asyncio.timeout(deadline.remaining()):
                    await submit_noops(stub, step, 16, args.batch)
                    await watch.until_completed(done + step)
                done += step
                sample = {
                    "missions": done,
                    "service_rss_mib": read_process(service).rss_kib / 1024,
                    "worker_rss_mib": read_process(worker).rss_kib / 1024,
                }
                samples.append(sample)
                print(
                    f"{done:>9,} missions: service {sample['service_rss_mib']:.1f} MiB,"
                    f" worker {sample['worker_rss_mib']:.1f} MiB",
                    flush=True,
                )
    return samples


def _flatness(samples: list[dict[str, float]], warmup: int, key: str) -> float:
    after = [sample[key] for sample in samples if sample["missions"] > warmup]
    return max(after) / min(after)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--missions", type=int, default=100_000, help="missions in all (default 100,000)")
    parser.add_argument("--warmup", type=int, default=20_000, help="missions before the flatness counts (20,000)")
    parser.add_argument("--step", type=int, default=5_000, help="missions between samples (default 5,000)")
    parser.add_argument("--batch", type=int, default=100, help="SubmitMissions of this many; 0: SubmitMission (100)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the whole run (default 3600)")
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL)
    parser.add_argument("--json", type=pathlib.Path, help="write the samples and the figures here")
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < args.missions or args.step < 1 or args.missions > 10_000_000 or args.batch < 0:
        parser.error("need 0 <= --warmup < --missions <= 10,000,000, --step >= 1, --batch >= 0")
    if args.missions - args.warmup < 2 * args.step:
        parser.error("leave at least two steps after --warmup")
    print("conditions: " + "; ".join(f"{key} {value}" for key, value in describe_machine().items()), flush=True)
    samples = asyncio.run(_run(args))
    figures = {key: _flatness(samples, args.warmup, f"{key}_rss_mib") for key in ("service", "worker")}
    for key, ratio in figures.items():
        print(f"{key}: highest RSS after {args.warmup:,} missions / lowest = {ratio:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "flatness": figures, "args": vars(args)}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
