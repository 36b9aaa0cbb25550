"""WatchEvents fan-out: N live subscribers follow the log while M missions run.

    .venv/bin/python -m bench.watch_fanout                     # 1000 subscribers, 2000 noop missions, both runs
    .venv/bin/python -m bench.watch_fanout --subscribers 50 --missions 200

Each run starts a fresh stack (namespace ``bench-<uuid>``, one mission-service, two
workers), opens the subscribers (live: no ``after_sequence``) on one or a few grpc.aio
channels, waits until each stream has answered (the service runs with a 1 s heartbeat, so
every registered stream sends one), then submits the missions from concurrent clients and
follows them to the end. The "fast" run has only fast subscribers; the "slow" run makes
``--slow`` of them sleep ``--slow-delay`` per event, so they fall behind, and shows what
happens to them and to the others. Figures are printed (and written with ``--json``) with
the conditions they were measured in. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import pathlib
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from bench.measure import Histogram, Sampler, describe_machine, own_cpu_seconds, read_machine, read_process
from bench.stack import DEFAULT_AMQP_URL, running_stack, service_pid
from missions import codec
from missions.metadata import LAST_SEQUENCE_KEY
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2, mission_service_pb2_grpc

__all__ = ["RunConfig", "RunResult", "main", "run"]

# Every event of the measured missions carries this correlation id (x-correlation-id).
MEASURED = "bench-watch-fanout"
# A noop mission emits CREATED, STARTED and COMPLETED.
EVENTS_PER_MISSION = 3
# Service heartbeat interval for the runs: every registered stream answers within it.
READY_HEARTBEAT_S = 1.0

_COMPLETED = events_pb2.EVENT_TYPE_COMPLETED
_SUBMIT_ATTEMPTS = 5
_LIMITS = {"subscribers": 20_000, "missions": 200_000, "submitters": 256, "channels": 64, "watch-buffer": 1_000_000}


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One run: how many subscribers (``slow`` of them slow) follow how many missions."""

    label: str
    subscribers: int
    missions: int
    slow: int = 0
    slow_delay_s: float = 0.05
    # Slow subscribers on a connection of their own with HTTP/2 BDP probing off: their
    # receive window stays 64 KiB instead of growing to ~4 MiB (about 19,000 events).
    slow_own_connection: bool = False
    submitters: int = 16
    channels: int = 1
    workers: int = 2
    timeout_s: float = 300.0
    amqp_url: str = DEFAULT_AMQP_URL
    rate: float | None = None  # missions/s across all submitters; None: as fast as they go
    service_profile: str | None = None
    watch_buffer: int | None = None  # the service's --watch-buffer; None: its default


@dataclass(eq=False)
class Subscriber:
    """What one WatchEvents stream delivered, as its client saw it."""

    slow: bool
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    received: int = 0  # events of the measured missions
    completed: int = 0
    first_sequence: int = 0
    last_sequence: int = 0
    gaps: int = 0  # a sequence that was neither the next in its record nor the first of the next record
    finished_at: float | None = None  # perf_counter when the last measured mission's COMPLETED arrived
    outcome: str = "open"
    status_last_sequence: int | None = None  # missions-last-sequence trailing metadata
    lag_when_fast_done: int | None = None
    ids: set[str] | None = None  # event ids, kept by one subscriber to detect duplicates


@dataclass
class RunResult:
    config: RunConfig
    namespace: str = ""
    timed_out: bool = False
    open_s: float = 0.0
    submit_s: float = 0.0
    submit_p50_s: float = math.nan
    submit_p99_s: float = math.nan
    submit_retries: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)
    window_s: float = 0.0
    expected_per_subscriber: int = 0
    fast: dict[str, Any] = field(default_factory=dict)
    slow: dict[str, Any] = field(default_factory=dict)
    service: dict[str, Any] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    machine: dict[str, Any] = field(default_factory=dict)


def _last_sequence(metadata: Any) -> int | None:
    for key, value in metadata or ():
        if key == LAST_SEQUENCE_KEY:
            return int(value)
    return None


class FanoutRun:
    """The subscribers and submitters of one run, against one running stack."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.missions = config.missions
        self.subscribers = [Subscriber(slow=index < config.slow) for index in range(config.subscribers)]
        first_fast = self.subscribers[config.slow] if config.slow < config.subscribers else None
        if first_fast is not None:
            first_fast.ids = set()
        self.fast_delays = Histogram()
        self.slow_delays = Histogram()
        self.fast_done = asyncio.Event()  # slow subscribers stop sleeping once it is set
        self.fast_left = config.subscribers - config.slow
        self.submit_latencies: list[float] = []
        self.submit_retries = 0
        self.retry_reasons: dict[str, int] = {}

    async def follow(self, stub: mission_service_pb2_grpc.MissionServiceStub, sub: Subscriber) -> None:
        """Read one live stream until the last measured mission completes, or the stream ends."""
        delays = self.slow_delays if sub.slow else self.fast_delays
        call = stub.WatchEvents(mission_service_pb2.WatchEventsRequest())
        try:
            async for response in call:
                sub.ready.set()
                if not response.HasField("event"):
                    continue  # a heartbeat
                event = response.event
                sequence = event.sequence
                # The next event of the same record, or the first of the next one (codec.sequence_at).
                expected = (sub.last_sequence + 1, codec.next_record_start(sub.last_sequence))
                if sub.last_sequence and sequence not in expected:
                    sub.gaps += 1
                sub.last_sequence = sequence
                if event.correlation_id != MEASURED:
                    continue
                stamp = event.time
                delays.add(time.time() - stamp.seconds - stamp.nanos * 1e-9)
                if not sub.received:
                    sub.first_sequence = sequence
                sub.received += 1
                if sub.ids is not None:
                    sub.ids.add(event.id)
                if event.type == _COMPLETED:
                    sub.completed += 1
                    if sub.completed == self.missions:
                        self._finish(sub, "received every event")
                        return
                if sub.slow and not self.fast_done.is_set():
                    await asyncio.sleep(self.config.slow_delay_s)
            sub.outcome = "ended OK (unexpected for a live stream)"
        except asyncio.CancelledError:
            sub.outcome = "still reading at the time bound"
            raise
        except grpc.aio.AioRpcError as exc:
            sub.outcome = exc.code().name
            sub.status_last_sequence = _last_sequence(exc.trailing_metadata())
        finally:
            call.cancel()
            if not sub.slow and sub.finished_at is None:
                self._finish(sub, sub.outcome)

    def _finish(self, sub: Subscriber, outcome: str) -> None:
        sub.outcome = outcome
        sub.finished_at = time.perf_counter()
        if not sub.slow:
            self.fast_left -= 1
            if self.fast_left == 0:
                head = max(s.last_sequence for s in self.subscribers)
                for other in self.subscribers:
                    if other.slow:
                        other.lag_when_fast_done = head - other.last_sequence
                self.fast_done.set()

    async def submit(self, stub: mission_service_pb2_grpc.MissionServiceStub) -> None:
        """Submit the measured noop missions from ``submitters`` concurrent clients."""
        numbers = iter(range(self.missions))
        metadata = (("x-correlation-id", MEASURED),)
        loop = asyncio.get_running_loop()
        begin = loop.time()
        rate = self.config.rate
        run_id = uuid.uuid4().hex

        async def submit_one(number: int) -> None:
            # The idempotency key makes a retry after UNAVAILABLE (e.g. a broker restarted
            # by someone else) submit the same mission, not a second one.
            request = mission_service_pb2.SubmitMissionRequest(type="noop", idempotency_key=f"{run_id}-{number}")
            for attempt in range(_SUBMIT_ATTEMPTS):
                try:
                    await stub.SubmitMission(request, metadata=metadata, timeout=120)
                    return
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == _SUBMIT_ATTEMPTS - 1:
                        raise
                    self.submit_retries += 1
                    reason = (exc.details() or "")[:80]
                    self.retry_reasons[reason] = self.retry_reasons.get(reason, 0) + 1
                    await asyncio.sleep(1 + attempt)

        async def submitter() -> None:
            for number in numbers:  # one shared iterator: each number is taken once
                if rate:  # open loop: mission n is due at n / rate, however slow the service answers
                    await asyncio.sleep(begin + number / rate - loop.time())
                started = time.perf_counter()
                await submit_one(number)
                self.submit_latencies.append(time.perf_counter() - started)

        async with asyncio.TaskGroup() as group:
            for _ in range(self.config.submitters):
                group.create_task(submitter())


def _channel(target: str, *, bdp_probe: bool = True) -> grpc.aio.Channel:
    # A local subchannel pool gives each channel a TCP connection of its own: channels with
    # equal arguments would otherwise share one from the process-wide pool.
    options: list[tuple[str, int]] = [("grpc.use_local_subchannel_pool", 1)]
    if not bdp_probe:
        options.append(("grpc.http2.bdp_probe", 0))
    return grpc.aio.insecure_channel(target, options=options)


async def _wait(tasks: Sequence[asyncio.Future[Any]], until: float) -> bool:
    """Wait for ``tasks`` until the loop time ``until``; True if they all finished."""
    if not tasks:
        return True
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, until - asyncio.get_running_loop().time()))
    return not pending


async def _progress(state: FanoutRun, started: float) -> None:
    while True:
        await asyncio.sleep(10)
        delivered = sum(sub.received for sub in state.subscribers)
        print(
            f"  {time.perf_counter() - started:6.0f} s: {len(state.submit_latencies)} submitted,"
            f" {delivered} events delivered, {state.fast_left} fast subscribers still reading",
            file=sys.stderr,
        )


def _quantiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def _subscriber_summary(subs: list[Subscriber], expected: int, delays: Histogram) -> dict[str, Any]:
    if not subs:
        return {"count": 0}
    outcomes: dict[str, int] = {}
    for sub in subs:
        outcomes[sub.outcome] = outcomes.get(sub.outcome, 0) + 1
    return {
        "count": len(subs),
        "delivered": sum(sub.received for sub in subs),
        "complete": sum(sub.received == expected and sub.gaps == 0 for sub in subs),
        "received_min": min(sub.received for sub in subs),
        "received_max": max(sub.received for sub in subs),
        "gaps": sum(sub.gaps for sub in subs),
        "first_sequences": sorted({sub.first_sequence for sub in subs}),
        "outcomes": outcomes,
        "delay_p50_s": delays.quantile(0.50),
        "delay_p99_s": delays.quantile(0.99),
        "delay_max_s": delays.max,
    }


def _slow_details(subs: list[Subscriber]) -> list[dict[str, Any]]:
    return [
        {
            "received": sub.received,
            "lag_when_fast_done": sub.lag_when_fast_done,
            "last_sequence": sub.last_sequence,
            "outcome": sub.outcome,
            "status_last_sequence": sub.status_last_sequence,
            "resumable": sub.status_last_sequence is None or sub.status_last_sequence == sub.last_sequence,
        }
        for sub in subs
    ]


async def run(config: RunConfig) -> RunResult:
    """One run on a fresh stack; returns its figures (partial, with ``timed_out``, past the bound)."""
    result = RunResult(config, expected_per_subscriber=config.missions * EVENTS_PER_MISSION)
    state = FanoutRun(config)
    service_args = ["--watch-heartbeat", str(READY_HEARTBEAT_S)]
    if config.watch_buffer is not None:
        service_args += ["--watch-buffer", str(config.watch_buffer)]
    profile = pathlib.Path(f"{config.service_profile}.{config.label}") if config.service_profile else None
    async with running_stack(
        config.amqp_url, workers=config.workers, service_args=service_args, service_profile=profile
    ) as stack:
        result.namespace = stack.namespace
        pid = service_pid(stack)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout_s
        channels = [_channel(stack.target) for _ in range(config.channels)]
        slow_channel = _channel(stack.target, bdp_probe=False) if config.slow_own_connection else None
        submit_channel = _channel(stack.target)
        tasks: list[asyncio.Task[None]] = []
        background: list[asyncio.Task[None]] = []  # the submitters and the progress line
        try:
            before_open = read_process(pid)
            opened = time.perf_counter()
            for index, sub in enumerate(state.subscribers):
                channel = slow_channel if sub.slow and slow_channel else channels[index % len(channels)]
                stub = mission_service_pb2_grpc.MissionServiceStub(channel)
                tasks.append(asyncio.create_task(state.follow(stub, sub)))
            ready = [asyncio.ensure_future(sub.ready.wait()) for sub in state.subscribers]
            if not await _wait(ready, deadline):
                missing = sum(not sub.ready.is_set() for sub in state.subscribers)
                raise TimeoutError(f"{missing} of {config.subscribers} streams did not answer in time")
            result.open_s = time.perf_counter() - opened
            service_start = read_process(pid)
            machine_start, client_start = read_machine(), own_cpu_seconds()
            submitter_stub = mission_service_pb2_grpc.MissionServiceStub(submit_channel)
            async with Sampler([pid]).running() as sampler:
                started = time.perf_counter()
                submitting = asyncio.create_task(state.submit(submitter_stub))
                background += [submitting, asyncio.create_task(_progress(state, started))]
                submitted = await _wait([submitting], deadline)
                if submitted and submitting.exception():
                    raise RuntimeError("submitting failed") from submitting.exception()
                result.submit_s = time.perf_counter() - started
                fast_tasks = [task for task, sub in zip(tasks, state.subscribers, strict=True) if not sub.slow]
                result.timed_out = not (submitted and await _wait(fast_tasks, deadline))
                finished = [sub.finished_at for sub in state.subscribers if not sub.slow and sub.finished_at]
                result.window_s = (max(finished) if finished else time.perf_counter()) - started
                service_end = read_process(pid)
                machine_end, client_end = read_machine(), own_cpu_seconds()
                if not result.timed_out:
                    # Slow subscribers now read without sleeping: to the end, or to their status.
                    result.timed_out = not await _wait(tasks, deadline)
            stats = await submitter_stub.GetStats(mission_service_pb2.GetStatsRequest(), timeout=30)
        finally:
            for task in [*tasks, *background]:
                task.cancel()
            await asyncio.gather(*tasks, *background, return_exceptions=True)
            for channel in [*channels, *([slow_channel] if slow_channel else []), submit_channel]:
                await channel.close()
        final = read_process(pid)
    result.submit_p50_s, result.submit_p99_s = _quantiles(state.submit_latencies)
    result.submit_retries = state.submit_retries
    result.retry_reasons = state.retry_reasons
    fast = [sub for sub in state.subscribers if not sub.slow]
    slow = [sub for sub in state.subscribers if sub.slow]
    result.fast = _subscriber_summary(fast, result.expected_per_subscriber, state.fast_delays)
    reference = fast[0].ids if fast else None
    result.fast["distinct_ids_first_subscriber"] = len(reference) if reference is not None else None
    result.fast["delivered_per_s"] = result.fast.get("delivered", 0) / result.window_s if result.window_s else math.nan
    result.slow = _subscriber_summary(slow, result.expected_per_subscriber, state.slow_delays)
    result.slow["subscribers"] = _slow_details(slow)
    succeeded = sum(c.count for c in stats.states if c.state == mission_pb2.MISSION_STATE_SUCCEEDED)
    result.service = {
        "rss_before_streams_mib": before_open.rss_kib / 1024,
        "rss_streams_open_mib": service_start.rss_kib / 1024,
        "rss_peak_sampled_mib": sampler.peak_rss_kib.get(pid, 0) / 1024,
        "vm_hwm_mib": final.hwm_kib / 1024,
        "cpu_window_s": service_end.cpu_s - service_start.cpu_s,
        "cpu_total_s": final.cpu_s,
        "log_last_sequence": stats.last_sequence,
        "missions_succeeded": succeeded,
    }
    result.client_cpu_s = client_end - client_start
    result.machine = {
        "busy_cores_window": machine_end.busy_cores_since(machine_start),
        "max_load1": sampler.max_load1,
    }
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if not math.isnan(seconds) else "n/a"


def render(result: RunResult) -> str:
    c = result.config
    window = result.window_s or math.nan
    fast, slow, service = result.fast, result.slow, result.service
    expected = result.expected_per_subscriber
    lines = [
        f"== run {c.label!r}: {c.subscribers} subscribers ({c.slow} slow, {c.slow_delay_s * 1000:g} ms/event),"
        f" {c.missions} noop missions from {c.submitters} clients"
        f" ({f'paced at {c.rate:g}/s' if c.rate else 'unpaced'}), {c.channels} channel(s)"
        + (" + 1 for the slow ones (BDP probing off)" if c.slow and c.slow_own_connection else "")
        + f", {c.workers} workers"
        + (f", watch buffer {c.watch_buffer}" if c.watch_buffer else "")
        + ("  ** TIMED OUT: partial figures **" if result.timed_out else ""),
        f"  namespace {result.namespace}; streams open and answering after {result.open_s:.1f} s",
        f"  submit: {c.missions} in {result.submit_s:.1f} s ({c.missions / result.submit_s:.0f}/s),"
        f" latency p50 {_ms(result.submit_p50_s)}, p99 {_ms(result.submit_p99_s)},"
        f" {result.submit_retries} retried after UNAVAILABLE"
        + (f" {result.retry_reasons}" if result.retry_reasons else ""),
        f"  window (first submit -> last fast subscriber done): {result.window_s:.1f} s;"
        f" {expected} events each; published {expected / window:.0f} events/s",
        f"  fast subscribers: {fast.get('delivered', 0)} deliveries, {fast.get('delivered_per_s', math.nan):.0f}/s;"
        f" delay publication->delivery p50 {_ms(fast.get('delay_p50_s', math.nan))},"
        f" p99 {_ms(fast.get('delay_p99_s', math.nan))}, max {_ms(fast.get('delay_max_s', math.nan))}",
        f"  count check: {fast.get('complete', 0)}/{fast.get('count', 0)} fast subscribers got all {expected}"
        f" (min {fast.get('received_min')}, max {fast.get('received_max')}), gaps {fast.get('gaps')},"
        f" first sequences {fast.get('first_sequences')}, distinct ids at subscriber 0:"
        f" {fast.get('distinct_ids_first_subscriber')}; log last sequence {service['log_last_sequence']},"
        f" succeeded {service['missions_succeeded']}; outcomes {fast.get('outcomes')}",
        f"  mission-service: CPU {service['cpu_window_s']:.1f} s in the window"
        f" ({service['cpu_window_s'] / window:.2f} cores), {service['cpu_total_s']:.1f} s in all;"
        f" RSS {service['rss_before_streams_mib']:.0f} MiB before streams,"
        f" {service['rss_streams_open_mib']:.0f} MiB with them open,"
        f" peak VmHWM {service['vm_hwm_mib']:.0f} MiB (sampled VmRSS peak {service['rss_peak_sampled_mib']:.0f} MiB)",
        f"  bench client: CPU {result.client_cpu_s:.1f} s in the window ({result.client_cpu_s / window:.2f} cores);"
        f" machine: {result.machine['busy_cores_window']:.2f} cores busy on average,"
        f" max 1-min load {result.machine['max_load1']:.2f}",
    ]
    if slow.get("count"):
        lines.append(
            f"  slow subscribers: delay p50 {_ms(slow['delay_p50_s'])}, p99 {_ms(slow['delay_p99_s'])};"
            f" outcomes {slow['outcomes']}"
        )
        # Identical fates are printed once, with how many slow subscribers met them.
        fates: dict[str, int] = {}
        for detail in slow["subscribers"]:
            fate = (
                f"{detail['received']} events, lag {detail['lag_when_fast_done']} when the fast were done;"
                f" then {detail['outcome']}"
            )
            if detail["status_last_sequence"] is not None:
                fate += f" with {LAST_SEQUENCE_KEY}={detail['status_last_sequence']}"
                fate += " (= last received: resumable)" if detail["resumable"] else " (MISMATCH with last received)"
            fates[fate] = fates.get(fate, 0) + 1
        lines += [f"    {count} x {fate}" for fate, count in fates.items()]
    return "\n".join(lines)


def _bounded(name: str, low: float) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= _LIMITS[name]:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {_LIMITS[name]}")
        return value

    return parse


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.watch_fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=_bounded("subscribers", 1), default=1000)
    parser.add_argument("--missions", type=_bounded("missions", 1), default=2000, help="noop missions per run")
    parser.add_argument(
        "--slow-missions",
        type=_bounded("missions", 1),
        default=None,
        help="missions of the slow run (default: --missions); slow subscribers overflow their 10,000-event buffer"
        " only if they fall that far behind",
    )
    parser.add_argument("--slow", type=int, default=10, help="slow subscribers in the slow run (default 10)")
    parser.add_argument("--slow-delay", type=float, default=0.05, help="seconds a slow subscriber sleeps per event")
    parser.add_argument(
        "--slow-own-connection",
        action="store_true",
        help="put the slow subscribers on a connection of their own with HTTP/2 BDP probing off (64 KiB window)",
    )
    parser.add_argument("--submitters", type=_bounded("submitters", 1), default=16, help="concurrent submitters")
    parser.add_argument(
        "--rate", type=float, default=None, help="missions/s across all submitters (default: as fast as they go)"
    )
    parser.add_argument(
        "--profile-service", metavar="FILE", help="run the service under cProfile, writing FILE.<run label>"
    )
    parser.add_argument("--channels", type=_bounded("channels", 1), default=1, help="grpc.aio channels for the streams")
    parser.add_argument("--workers", type=int, default=2, help="mission-worker processes")
    parser.add_argument(
        "--watch-buffer",
        type=_bounded("watch-buffer", 1),
        help="the service's per-subscriber buffer (default: the service's, 10,000); smaller cuts slow subscribers"
        " off sooner",
    )
    parser.add_argument("--mode", choices=("both", "fast", "slow"), default="both", help="which runs (default both)")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds each run may take from opening its streams (default 900)"
    )
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL, help="[MISSIONS_BENCH_AMQP_URL]")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not 0 <= args.slow < args.subscribers:
        parser.error("--slow must be at least 0 and fewer than --subscribers")
    if args.rate is not None and not 0 < args.rate <= 100_000:
        parser.error("--rate must be in (0, 100000] missions/s")
    if not 0 < args.slow_delay <= 10 or not 0 < args.timeout <= 3600 or not 1 <= args.workers <= 16:
        parser.error("--slow-delay must be in (0, 10], --timeout in (0, 3600], --workers in [1, 16]")
    return args


def _configs(args: argparse.Namespace) -> list[RunConfig]:
    common = {
        "subscribers": args.subscribers,
        "submitters": args.submitters,
        "channels": args.channels,
        "workers": args.workers,
        "timeout_s": args.timeout,
        "amqp_url": args.amqp_url,
        "slow_delay_s": args.slow_delay,
        "slow_own_connection": args.slow_own_connection,
        "rate": args.rate,
        "service_profile": args.profile_service,
        "watch_buffer": args.watch_buffer,
    }
    configs = []
    if args.mode in ("both", "fast"):
        configs.append(RunConfig("fast", missions=args.missions, **common))
    if args.mode in ("both", "slow"):
        configs.append(RunConfig("slow", missions=args.slow_missions or args.missions, slow=args.slow, **common))
    return configs


async def _main(args: argparse.Namespace) -> list[RunResult]:
    results = []
    for config in _configs(args):
        print(f"run {config.label!r} ...", file=sys.stderr)
        result = await run(config)
        print(render(result), flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    machine = describe_machine()
    print("conditions: " + "; ".join(f"{key} {value}" for key, value in machine.items()), flush=True)
    try:
        results = asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    with open("/proc/loadavg") as loadavg:
        print(f"load average at the end (1/5/15 min): {' '.join(loadavg.read().split()[:3])}")
    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump({"machine": machine, "runs": [asdict(result) for result in results]}, out, indent=2)
    complete = all(
        not r.timed_out and r.fast.get("count") and r.fast.get("complete") == r.fast.get("count") for r in results
    )
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
