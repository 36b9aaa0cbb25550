"""The benchmark suite: this service and Celery 5, side by side, on the local RabbitMQ.

    pip install -e '.[bench]'
    .venv/bin/python -m bench.suite                 # 10,000 missions, 1,000 sequential, 3 repetitions
    .venv/bin/python -m bench.suite --quick         # smoke run: a few hundred missions, once
    .venv/bin/python -m bench.suite --json out.json

Scenarios (each run on a fresh namespace or fresh Celery names, repeated ``--repeat`` times,
interleaving the sides so that noise hits them alike):

1. throughput: ``--missions`` noop missions from ``--clients`` concurrent clients until a
   WatchEvents subscriber has seen every COMPLETED (ours, 1 then 2 workers); Celery prefork
   with 2 processes, no result backend, with events (-E, until the event receiver has seen
   every task-succeeded) and without (until the worker reports them done);
2. latency: ``--latency-missions`` sequential missions, submit -> done seen by the client,
   and the submit round trip alone; Celery with the rpc:// backend, with and without events;
3. the Celery figures and our ratio to them, pair by pair (in tables 1 and 2);
4. cost per mission, from /proc: CPU per 1,000 missions of each process and the broker, peak
   RSS, events published per mission (from the throughput runs);
5. scaling: throughput with each of ``--scaling-workers`` and the broker's CPU per mission
   with each (against 1 worker's: per-worker fan-out shows there), the drain rate of a backlog of
   ``--missions`` already queued, and how a probe's latency grows with the queue's depth.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import math
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from bench import celery_side, missions_side
from bench.limits import Deadline
from bench.measure import describe_machine
from bench.missions_side import OurStack
from bench.report import BACKLOG, CELERY, CELERY_EVENTS, Collected, ours_label, render
from bench.stack import DEFAULT_AMQP_URL

__all__ = ["main"]

SCENARIOS = ("throughput", "latency", "scaling")
_QUICK = {"missions": 300, "latency_missions": 100, "repeat": 1}
_FULL = {"missions": 10_000, "latency_missions": 1_000, "repeat": 3}
_MAX_MISSIONS = 200_000


@dataclass(frozen=True, slots=True)
class Plan:
    """What one invocation runs, from the flags."""

    scenarios: tuple[str, ...]
    missions: int
    latency_missions: int
    repeat: int
    clients: int
    batch: int
    scaling_workers: tuple[int, ...]
    backlog_workers: int
    ours: OurStack
    deadline: Deadline

    @property
    def throughput_workers(self) -> tuple[int, ...]:
        """Worker counts of the throughput runs: 1 and 2 (scenario 1), plus the scaling ones."""
        counts = {1, 2} if "throughput" in self.scenarios else set()
        if "scaling" in self.scenarios:
            counts |= set(self.scaling_workers)
        return tuple(sorted(counts))


class Suite:
    """Runs the plan's scenarios, collecting each run's figures or its failure."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.collected = Collected()

    def _run(self, scenario: str, side: str, measure: Callable[[], dict[str, float]]) -> None:
        self.plan.deadline.remaining()  # past the global bound: stop here (TimeoutError)
        print(f"  {scenario}: {side} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            figures = measure()
        except Exception as exc:
            traceback.print_exc()
            # The first line: a process's whole log may follow (its traceback went to stderr above).
            summary = (str(exc).splitlines() or [""])[0]
            self.collected.failures.append(f"{scenario}, {side}: {exc.__class__.__name__}: {summary}")
            return
        self.collected.add(scenario, side, figures)
        shown = ", ".join(f"{name} {value:.4g}" for name, value in figures.items())
        print(f"    {time.monotonic() - started:.0f} s: {shown}", file=sys.stderr, flush=True)

    def _ours(self, scenario: str, side: str, measure: Callable[[], Coroutine[Any, Any, dict[str, float]]]) -> None:
        self._run(scenario, side, lambda: asyncio.run(measure()))

    def _celery(
        self,
        scenario: str,
        *,
        events: bool,
        backend: str | None,
        body: Callable[[celery_side.CeleryWorker], dict[str, float]],
    ) -> None:
        def measure() -> dict[str, float]:
            with celery_side.celery_worker(
                self.plan.ours.amqp_url, events=events, backend=backend, deadline=self.plan.deadline
            ) as worker:
                return body(worker)

        self._run(scenario, CELERY_EVENTS if events else CELERY, measure)

    def throughput(self, workers: int) -> None:
        plan = self.plan
        self._ours(
            "throughput",
            ours_label(workers),
            functools.partial(
                missions_side.throughput,
                plan.ours,
                workers=workers,
                missions=plan.missions,
                clients=plan.clients,
                deadline=plan.deadline,
                batch=plan.batch,
            ),
        )

    def celery_throughput(self) -> None:
        plan = self.plan
        for events in (True, False):
            self._celery(
                "throughput",
                events=events,
                backend=None,
                body=lambda worker: celery_side.throughput(worker, plan.missions, plan.clients, plan.deadline),
            )

    def latency(self) -> None:
        plan = self.plan
        warmup = min(20, plan.latency_missions // 10)
        self._ours(
            "latency",
            ours_label(1),
            functools.partial(
                missions_side.latency, plan.ours, missions=plan.latency_missions, warmup=warmup, deadline=plan.deadline
            ),
        )
        for events in (True, False):
            self._celery(
                "latency",
                events=events,
                backend="rpc://",
                body=lambda worker: celery_side.latency(worker, plan.latency_missions, warmup, plan.deadline),
            )

    def backlog(self) -> None:
        plan = self.plan
        depths = (0, plan.missions // 10, plan.missions)
        self._ours(
            "backlog",
            BACKLOG,
            functools.partial(
                missions_side.backlog,
                plan.ours,
                workers=plan.backlog_workers,
                depths=depths,
                clients=plan.clients,
                deadline=plan.deadline,
                batch=plan.batch,
            ),
        )

    def repetition(self) -> None:
        """Each scenario once, our runs and Celery's interleaved."""
        if "throughput" in self.plan.scenarios:
            self.throughput(1)
            self.celery_throughput()
        for workers in self.plan.throughput_workers:
            if workers != 1 or "throughput" not in self.plan.scenarios:
                self.throughput(workers)
        if "latency" in self.plan.scenarios:
            self.latency()
        if "scaling" in self.plan.scenarios:
            self.backlog()


def _counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(","))
    if not counts or not all(1 <= count <= 16 for count in counts):
        raise argparse.ArgumentTypeError("worker counts are comma-separated, each from 1 to 16")
    return counts


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--missions", type=int, help="missions per throughput run and backlog (default 10,000)")
    parser.add_argument("--latency-missions", type=int, help="sequential missions per latency run (default 1,000)")
    parser.add_argument("--repeat", type=int, help="repetitions of every run (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 missions, 100 sequential, once")
    parser.add_argument("--clients", type=int, default=16, help="concurrent submitting clients (default 16)")
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="our throughput and backlog runs submit with SubmitMissions calls of this many missions"
        " (default 0: one SubmitMission per mission)",
    )
    parser.add_argument("--worker-concurrency", type=int, default=8, help="each mission-worker's --concurrency")
    parser.add_argument("--scaling-workers", type=_counts, default=(1, 2, 4), help="default 1,2,4")
    parser.add_argument("--backlog-workers", type=int, default=2, help="workers draining the backlog (default 2)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds the whole suite may take (default 3600)")
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL, help="[MISSIONS_BENCH_AMQP_URL]")
    parser.add_argument("--json", dest="json_path", help="also write every run's figures to this file")
    args = parser.parse_args(argv)
    for name, value in (_QUICK if args.quick else _FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    scenarios = tuple(args.scenarios.split(","))
    if not set(scenarios) <= set(SCENARIOS):
        parser.error(f"--scenarios takes a subset of {','.join(SCENARIOS)}")
    args.scenarios = scenarios
    if not 10 <= args.missions <= _MAX_MISSIONS or not 10 <= args.latency_missions <= _MAX_MISSIONS:
        parser.error(f"--missions and --latency-missions must be in [10, {_MAX_MISSIONS}]")
    if not 1 <= args.repeat <= 20 or not 1 <= args.clients <= 256 or not 1 <= args.worker_concurrency <= 1024:
        parser.error("--repeat must be in [1, 20], --clients in [1, 256], --worker-concurrency in [1, 1024]")
    if not 0 <= args.batch <= 1000:
        parser.error("--batch must be in [0, 1000] (the service's default --max-batch-missions)")
    if not 0 < args.timeout <= 24 * 3600 or not 1 <= args.backlog_workers <= 16:
        parser.error("--timeout must be in (0, 86400] seconds and --backlog-workers in [1, 16]")
    return args


def _conditions(args: argparse.Namespace, plan: Plan) -> dict[str, str]:
    return {
        **describe_machine(),
        "celery": f"{metadata.version('celery')} (kombu {metadata.version('kombu')})",
        # Nothing here installs an event loop policy: every process runs asyncio's default loop.
        "event loop": "asyncio default (selector, epoll); uvloop "
        + ("installed but not used" if importlib.util.find_spec("uvloop") else "not installed"),
        "ours": "1 mission-service, N mission-workers (one asyncio process each,"
        f" --concurrency {args.worker_concurrency}); a fresh namespace per run",
        "Celery": f"1 worker, prefork {celery_side.PREFORK_PROCESSES} processes, default prefetch; fresh names per run",
        "workload": f"noop; {plan.missions:,} missions per throughput run from {plan.clients} concurrent clients"
        + (f" in SubmitMissions batches of {plan.batch}" if plan.batch else "")
        + ";"
        f" {plan.latency_missions:,} sequential for latency; {plan.repeat} repetition(s)",
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    plan = Plan(
        scenarios=args.scenarios,
        missions=args.missions,
        latency_missions=args.latency_missions,
        repeat=args.repeat,
        clients=args.clients,
        batch=args.batch,
        scaling_workers=args.scaling_workers,
        backlog_workers=args.backlog_workers,
        ours=OurStack(args.amqp_url, args.worker_concurrency),
        deadline=Deadline.after(args.timeout),
    )
    conditions = _conditions(args, plan)
    suite = Suite(plan)
    try:
        for number in range(plan.repeat):
            print(f"repetition {number + 1} of {plan.repeat}", file=sys.stderr, flush=True)
            suite.repetition()
    except TimeoutError:
        suite.collected.failures.append(f"stopped: --timeout {args.timeout:g} s passed")
    except KeyboardInterrupt:
        suite.collected.failures.append("stopped: interrupted")
    with open("/proc/loadavg") as loadavg:
        conditions["load average at the end (1/5/15 min)"] = " ".join(loadavg.read().split()[:3])
    print(render(suite.collected, conditions, plan.throughput_workers), flush=True)
    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump(_finite({"conditions": conditions, **suite.collected.as_json()}), out, indent=2)
    return 1 if suite.collected.failures else 0


def _finite(value: Any) -> Any:
    """``value`` with NaN (a figure no run produced) as null, which JSON can carry."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return None if isinstance(value, float) and math.isnan(value) else value


if __name__ == "__main__":
    sys.exit(main())
