"""``missionctl top``: workers, queue depths, missions per state and throughput, sampled every --interval seconds.

GetStats and ListWorkers give totals; throughput is the change between two samples (about ten
seconds apart) divided by the time between them, so the first frame has none yet.
"""

from __future__ import annotations

import argparse
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic, sleep
from typing import Any

from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from missions.client import Client
from missions.ctl import render
from missions.ctl.commands import EXIT_OK
from missions.ctl.output import Output, proto_dict
from missions.v1 import mission_service_pb2 as pb

__all__ = ["Rates", "Sample", "command", "frame_record", "frame_view", "measure"]

# Rates are measured over about this many seconds.
_WINDOW_S = 10.0
# Mission types named on the "no worker" line; `missionctl stats` lists them all.
_NO_WORKER_SHOWN = 4


@dataclass(frozen=True, slots=True)
class Sample:
    """What the service said at one moment.

    Attributes:
        taken: ``time.monotonic()`` when it was taken, for rates.
        time: the wall-clock time, for people.
    """

    taken: float
    time: datetime
    stats: pb.GetStatsResponse
    workers: pb.ListWorkersResponse


@dataclass(frozen=True, slots=True)
class Rates:
    """Per second between two samples; None (and no worker entries) after just one.

    Attributes:
        events: events appended to the log.
        submitted: new missions (growth of the total over every state).
        succeeded: missions that reached SUCCEEDED.
        failed: missions that reached FAILED.
        workers: attempts finished, by worker id (a worker that restarted in between has none).
    """

    events: float | None = None
    submitted: float | None = None
    succeeded: float | None = None
    failed: float | None = None
    workers: dict[str, float] = field(default_factory=dict)


def measure(previous: Sample | None, current: Sample) -> Rates:
    """The rates between an earlier sample and the current one."""
    elapsed = current.taken - previous.taken if previous is not None else 0.0
    if previous is None or elapsed <= 0:
        return Rates()

    def per_second(before: int, after: int) -> float:
        # Totals can shrink (retention prunes old missions, a redrive leaves FAILED): no negative rates.
        return max(0, after - before) / elapsed

    before, after = dict(render.state_counts(previous.stats)), dict(render.state_counts(current.stats))
    earlier = {worker.id: worker for worker in previous.workers.workers}
    return Rates(
        events=per_second(previous.stats.events_read, current.stats.events_read),
        submitted=per_second(sum(before.values()), sum(after.values())),
        succeeded=per_second(before.get("SUCCEEDED", 0), after.get("SUCCEEDED", 0)),
        failed=per_second(before.get("FAILED", 0), after.get("FAILED", 0)),
        workers={
            worker.id: per_second(earlier[worker.id].finished, worker.finished)
            for worker in current.workers.workers
            if worker.id in earlier and earlier[worker.id].session == worker.session
        },
    )


def frame_record(sample: Sample, rates: Rates) -> dict[str, Any]:
    """One frame for -o json/jsonl: the two responses as proto JSON, and the rates (null on the first frame)."""
    return {
        "time": sample.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "stats": proto_dict(sample.stats),
        "workers": [proto_dict(worker) for worker in sample.workers.workers],
        "rates": {
            "events_per_s": rates.events,
            "submitted_per_s": rates.submitted,
            "succeeded_per_s": rates.succeeded,
            "failed_per_s": rates.failed,
            "worker_attempts_per_s": rates.workers,
        },
    }


def frame_view(sample: Sample, rates: Rates, interval: float) -> RenderableType:
    """One frame for people: a header, states, queues, throughput, the mission types no live
    worker handles (only when there are some) and the workers table."""
    stats = sample.stats
    header = Text.assemble(
        ("missionctl top", "bold"),
        f"  every {interval:g}s  {sample.time:%Y-%m-%d %H:%M:%S}Z",
        ("  Ctrl-C quits", "dim"),
    )
    states = Text("missions  ")
    for name, count in render.state_counts(stats):
        states.append(f"{name} ", style=render.STYLES.get(name, "bold"))
        states.append(f"{count}   ")
    queues = Text(
        f"queues    depth {stats.queue_depth}   dead letters {stats.dead_letter_depth}   running {stats.running}"
        f"   workers {stats.active_workers} active"
    )
    throughput = Text(
        f"rates     {render.rate(rates.events)} events   {render.rate(rates.submitted)} submitted"
        f"   {render.rate(rates.succeeded)} succeeded   {render.rate(rates.failed)} failed"
        f"   last hour: {stats.succeeded_last_hour} succeeded, {stats.failed_last_hour} failed"
    )
    workers: RenderableType = (
        render.workers_table(sample.workers.workers, sample.time, rates.workers)
        if sample.workers.workers
        else Text("no workers", style="dim")
    )
    lines = [header, states, queues, throughput]
    if starved := render.unserved(stats):
        lines.append(_no_worker_line(starved))
    return Group(*lines, Text(""), workers)


def _no_worker_line(starved: list[pb.MissionTypeStats]) -> Text:
    """The types whose missions wait with no live worker, on one line (the first few, then a count)."""
    shown = ", ".join(f"{kind.mission_type} ({kind.waiting} waiting)" for kind in starved[:_NO_WORKER_SHOWN])
    more = f", {len(starved) - _NO_WORKER_SHOWN} more" if len(starved) > _NO_WORKER_SHOWN else ""
    return Text.assemble((f"{render.NO_WORKER:<10}", "bold red"), shown + more)


def _samples(take: Callable[[], Sample], interval: float) -> Iterator[tuple[Sample | None, Sample]]:
    """(baseline, current) pairs, one every ``interval`` seconds, for ever.

    The baseline is the sample about ``_WINDOW_S`` earlier (the previous one for long intervals):
    workers report their counts with each heartbeat, every few seconds, so the change over a
    single short interval jumps between nothing and a burst.
    """
    history: deque[Sample] = deque(maxlen=max(1, math.ceil(_WINDOW_S / interval)))
    while True:
        current = take()
        yield (history[0] if history else None), current
        history.append(current)
        sleep(interval)


def command(client: Client, out: Output, args: argparse.Namespace) -> int:
    """Show frames until Ctrl-C (exit 0), or one with --once."""

    def take() -> Sample:
        taken, time = monotonic(), datetime.now(UTC)
        stats = client.stats()
        return Sample(taken, time, stats, pb.ListWorkersResponse(workers=client.workers(include_gone=args.all)))

    frames = _samples(take, args.interval)
    try:
        if out.live and not (args.once or args.plain):
            with Live(console=out.console, auto_refresh=False) as live:
                for baseline, current in frames:
                    live.update(frame_view(current, measure(baseline, current), args.interval), refresh=True)
        else:
            for baseline, current in frames:
                _print(out, current, measure(baseline, current), args.interval, first=baseline is None)
                if args.once:
                    break
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _print(out: Output, sample: Sample, rates: Rates, interval: float, *, first: bool) -> None:
    """One frame after the other: a JSON line each, or text frames a blank line apart."""
    if out.json:
        out.record(frame_record(sample, rates))
        return
    if not first:
        out.console.print()
    out.console.print(frame_view(sample, rates, interval))
