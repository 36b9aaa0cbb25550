"""What a benchmark reads besides its own counts: latency histograms, /proc figures, the machine."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from importlib import metadata

__all__ = [
    "Histogram",
    "MachineReading",
    "ProcessReading",
    "Sampler",
    "cpu_seconds",
    "descendants",
    "describe_machine",
    "own_cpu_seconds",
    "pids_named",
    "read_machine",
    "read_process",
]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Histogram:
    """Durations in seconds, kept as counts in buckets 1 % wide (1 µs to hours) in constant memory.

    Millions of samples cost one list of ~2,400 counters; a quantile is exact to within a
    bucket (1 %), which is finer than anything run-to-run noise lets us claim.
    """

    _PER_E = 100  # buckets per factor of e: successive edges differ by exp(1/100) = 1.01 (1 %)
    _BUCKETS = 2_400  # up to exp(24) µs = 26.5e9 µs: far beyond any bounded run

    def __init__(self) -> None:
        self._counts = [0] * self._BUCKETS
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        micros = seconds * 1e6
        # Bucket 0 holds everything under 1 µs (and clock-skew negatives, which same-host clocks avoid).
        index = 0 if micros < 1 else min(int(math.log(micros) * self._PER_E) + 1, self._BUCKETS - 1)
        self._counts[index] += 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float:
        """The duration below which a fraction ``q`` of the samples lie (upper edge of its bucket)."""
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, count in enumerate(self._counts):
            seen += count
            if seen >= rank:
                return math.exp(index / self._PER_E) / 1e6 if index else 1e-6
        return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan


@dataclass(frozen=True, slots=True)
class ProcessReading:
    """One look at a process in /proc: resident memory now and at its peak, CPU used so far."""

    rss_kib: int
    hwm_kib: int
    cpu_s: float


def read_process(pid: int) -> ProcessReading:
    """VmRSS and VmHWM from /proc/<pid>/status, utime + stime from /proc/<pid>/stat."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces; the fields after its ")" are fixed.
        after_name = stat.read().rsplit(")", 1)[1].split()
    utime, stime = int(after_name[11]), int(after_name[12])  # fields 14 and 15 of proc(5)
    return ProcessReading(fields["VmRSS"], fields["VmHWM"], (utime + stime) / _CLOCK_TICKS)


def pids_named(command: str) -> list[int]:
    """Pids whose /proc/<pid>/comm is ``command`` (e.g. ``beam.smp``, the RabbitMQ node)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"{entry.path}/comm") as comm:
                if comm.read().strip() == command:
                    pids.append(int(entry.name))
    return sorted(pids)


def descendants(pid: int) -> list[int]:
    """The children of ``pid``, their children and so on (e.g. a Celery prefork pool), from /proc."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        with contextlib.suppress(OSError), os.scandir(f"/proc/{parent}/task") as tasks:
            for task in tasks:
                with contextlib.suppress(OSError), open(f"{task.path}/children") as children:
                    kids = [int(kid) for kid in children.read().split()]
                    found += kids
                    pending += kids
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time used so far by these processes together (one that has exited counts nothing)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += read_process(pid).cpu_s
    return total


def own_cpu_seconds() -> float:
    """CPU time (user + system) this process has used: the benchmark client's own cost."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class MachineReading:
    """Whole-machine CPU counters from /proc/stat and the 1-minute load average."""

    busy_ticks: int
    total_ticks: int
    load1: float

    def busy_cores_since(self, earlier: MachineReading) -> float:
        """Average number of cores busy (any process, including other sessions) between two readings."""
        total = self.total_ticks - earlier.total_ticks
        cores = os.cpu_count() or 1
        return cores * (self.busy_ticks - earlier.busy_ticks) / total if total else math.nan


def read_machine() -> MachineReading:
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    with open("/proc/loadavg") as loadavg:
        load1 = float(loadavg.read().split()[0])
    return MachineReading(sum(ticks) - idle, sum(ticks), load1)


@dataclass
class Sampler:
    """Samples the processes' VmRSS and the load average every ``interval`` seconds while entered."""

    pids: Iterable[int]
    interval: float = 0.5
    peak_rss_kib: dict[int, int] = field(default_factory=dict)
    max_load1: float = 0.0

    def sample(self) -> None:
        self.max_load1 = max(self.max_load1, read_machine().load1)
        for pid in self.pids:
            with contextlib.suppress(OSError):
                rss = read_process(pid).rss_kib
                self.peak_rss_kib[pid] = max(self.peak_rss_kib.get(pid, 0), rss)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Sampler]:
        task = asyncio.create_task(self._run(), name="sampler")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.sample()


def _rabbitmq_version() -> str:
    try:
        done = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc.__class__.__name__})"
    return done.stdout.strip() or "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def describe_machine() -> dict[str, str]:
    """How the figures were obtained: versions, cores and the load before the run."""
    with open("/proc/loadavg") as loadavg:
        load = " ".join(loadavg.read().split()[:3])
    return {
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "grpcio": metadata.version("grpcio"),
        "protobuf": metadata.version("protobuf"),
        "rabbitmq": _rabbitmq_version(),
        "cores": f"{os.cpu_count()} ({_cpu_model()})",
        "kernel": platform.release(),
        "load average at start (1/5/15 min)": load,
    }
