"""The Celery side: a prefork worker as a subprocess, an in-process event receiver, the same workloads.

Each run gets its own names (``bench-celery-<uuid>``: queue, task, event and control
exchanges), so runs never collide on the shared broker, and deletes them afterwards.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from bench.celery_app import NOOP, CeleryNames, make_app
from bench.limits import Deadline
from bench.measure import cpu_seconds, descendants, own_cpu_seconds, pids_named, read_machine, read_process
from bench.stats import latency_figures

__all__ = ["CeleryWorker", "celery_worker", "latency", "throughput"]

PREFORK_PROCESSES = 2
_REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
_STOP_TIMEOUT_S = 20
_POLL_S = 0.1  # how often the run without events asks the worker whether it is done


@dataclass(frozen=True, slots=True)
class CeleryWorker:
    """A running ``celery worker`` and the in-process app that talks to it."""

    app: Celery
    names: CeleryNames
    nodename: str
    pid: int
    events: bool

    def pids(self) -> list[int]:
        """The main process and its prefork pool."""
        return [self.pid, *descendants(self.pid)]


@contextlib.contextmanager
def celery_worker(broker_url: str, *, events: bool, backend: str | None, deadline: Deadline) -> Iterator[CeleryWorker]:
    """A prefork worker (``-c 2``, ``-E`` if ``events``) on names of its own, answering pings; cleaned up on exit."""
    names = CeleryNames(f"bench-celery-{uuid.uuid4().hex}")
    app = make_app(broker_url, names, backend)
    nodename = f"{names.prefix}@{socket.gethostname()}"
    env = {
        **os.environ,
        "BENCH_CELERY_BROKER": broker_url,
        "BENCH_CELERY_PREFIX": names.prefix,
        "BENCH_CELERY_BACKEND": backend or "",
    }
    argv = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "--pool", "prefork"]
    argv += ["--concurrency", str(PREFORK_PROCESSES), "--hostname", nodename, "--loglevel", "WARNING"]
    # Gossip and mingle talk to every worker on the broker at start-up: not ours to measure.
    argv += ["--without-gossip", "--without-mingle", *(["--task-events"] if events else [])]
    with tempfile.NamedTemporaryFile(prefix=f"{names.prefix}-", suffix=".log") as log:
        popen = subprocess.Popen(
            argv, env=env, cwd=_REPOSITORY, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_answering(app, nodename, popen, deadline)
            yield CeleryWorker(app, names, nodename, popen.pid, events)
        except BaseException:
            tail = pathlib.Path(log.name).read_text(errors="replace").splitlines()[-30:]
            print("--- celery worker log tail ---\n" + "\n".join(tail), file=sys.stderr)
            raise
        finally:
            _stop(popen)
            _delete_names(app, names, nodename)
            app.close()


def _wait_answering(app: Celery, nodename: str, popen: subprocess.Popen[bytes], deadline: Deadline) -> None:
    while not app.control.ping(destination=[nodename], timeout=deadline.remaining(0.5)):
        if popen.poll() is not None:
            raise RuntimeError(f"the celery worker exited with {popen.returncode} before answering a ping")


def _stop(popen: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL to the whole session if it hangs."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


def _delete_names(app: Celery, names: CeleryNames, nodename: str) -> None:
    # Auto-delete queues (pidbox, event and reply queues) go with their consumers; these may not.
    with app.connection_for_write() as connection:
        for queue in (names.queue, f"{nodename}.{names.control_exchange}.pidbox"):
            with connection.channel() as channel, contextlib.suppress(*connection.channel_errors):
                channel.queue_delete(queue)
        for exchange in names.exchanges:
            with connection.channel() as channel, contextlib.suppress(*connection.channel_errors):
                channel.exchange_delete(exchange)


@dataclass(eq=False)
class EventReceiver:
    """Celery's real-time event receiver (``app.events.Receiver``) in a thread, counting what it sees."""

    app: Celery
    ready: threading.Event = field(default_factory=threading.Event)
    task_events: int = 0
    succeeded: int = 0
    last_succeeded_at: float = math.nan  # perf_counter
    _arrived: dict[str, float] = field(default_factory=dict, init=False)
    _condition: threading.Condition = field(default_factory=threading.Condition, init=False)
    _receiver: Any = field(default=None, init=False)
    _error: BaseException | None = field(default=None, init=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        now = time.perf_counter()
        kind = event["type"]
        with self._condition:
            if kind.startswith("task-"):
                self.task_events += 1
            if kind == "task-succeeded":
                self.succeeded += 1
                self.last_succeeded_at = now
                self._arrived[event["uuid"]] = now
                self._condition.notify_all()
        self.ready.set()  # the first event is the worker's answer to the receiver's wake-up call

    def _capture(self) -> None:
        try:
            with self.app.connection_for_read() as connection:
                self._receiver = self.app.events.Receiver(connection, handlers={"*": self._on_event})
                self._receiver.capture(limit=None, timeout=None, wakeup=True)
        except BaseException as exc:
            self._error = exc
            with self._condition:
                self._condition.notify_all()
            self.ready.set()

    def wait_until(self, done: Callable[[], bool], deadline: Deadline) -> None:
        with self._condition:
            if not self._condition.wait_for(lambda: done() or self._error is not None, deadline.remaining()):
                raise TimeoutError("celery events did not arrive in time")
        if self._error is not None:
            raise RuntimeError("the celery event receiver failed") from self._error

    def arrival(self, task_id: str, deadline: Deadline) -> float:
        """When the task's task-succeeded event arrived (perf_counter), waiting for it if need be."""
        self.wait_until(lambda: task_id in self._arrived, deadline)
        return self._arrived.pop(task_id)

    @contextlib.contextmanager
    def running(self, deadline: Deadline) -> Iterator[EventReceiver]:
        thread = threading.Thread(target=self._capture, name="celery-events", daemon=True)
        thread.start()
        try:
            if not self.ready.wait(deadline.remaining(30)) or self._error is not None:
                raise RuntimeError("the celery event receiver saw no event from the worker") from self._error
            yield self
        finally:
            if self._receiver is not None:
                self._receiver.should_stop = True
            thread.join(5)


def _send(app: Celery, count: int) -> None:
    for _ in range(count):
        app.send_task(NOOP)


def _wait_done_by_control(worker: CeleryWorker, expected: int, deadline: Deadline) -> float:
    """Without events, ask the worker (remote control) until it has accepted ``expected`` tasks and runs none."""
    inspect = worker.app.control.inspect(destination=[worker.nodename], timeout=1.0, limit=1)
    while True:
        stats = (inspect.stats() or {}).get(worker.nodename, {})
        if stats.get("total", {}).get(NOOP, 0) >= expected and not (inspect.active() or {}).get(worker.nodename):
            return time.perf_counter()
        time.sleep(deadline.remaining(_POLL_S))


def throughput(worker: CeleryWorker, tasks: int, clients: int, deadline: Deadline) -> dict[str, float]:
    """``tasks`` noop tasks sent from ``clients`` threads, until the worker has run them all.

    With events, "run" is the last task-succeeded event seen by the receiver (like our
    COMPLETED on WatchEvents); without, the worker's own count via remote control, polled
    every 0.1 s (so the window is up to that much too long).
    """
    receiver = EventReceiver(worker.app)
    with receiver.running(deadline) if worker.events else contextlib.nullcontext(receiver):
        pids, broker = worker.pids(), pids_named("beam.smp")
        shares = [tasks // clients + (index < tasks % clients) for index in range(clients)]
        cpu_start = (cpu_seconds(pids), cpu_seconds(broker), own_cpu_seconds())
        load1 = read_machine().load1
        started = time.perf_counter()
        with ThreadPoolExecutor(clients, thread_name_prefix="celery-client") as pool:
            for sent in [pool.submit(_send, worker.app, share) for share in shares]:
                sent.result(deadline.remaining())
        if worker.events:
            receiver.wait_until(lambda: receiver.succeeded >= tasks, deadline)
            finished = receiver.last_succeeded_at
        else:
            finished = _wait_done_by_control(worker, tasks, deadline)
        cpu_end = (cpu_seconds(pids), cpu_seconds(broker), own_cpu_seconds())
        window = finished - started
    per_thousand = [1000 * (end - start) / tasks for start, end in zip(cpu_start, cpu_end, strict=True)]
    figures = {
        "per_s": tasks / window,
        "window_s": window,
        "cpu_worker_per_1000": per_thousand[0],
        "cpu_broker_per_1000": per_thousand[1],
        "cpu_client_per_1000": per_thousand[2],
        "peak_rss_worker_mib": sum(read_process(pid).hwm_kib for pid in pids) / 1024,
        "load1": load1,
    }
    figures["events_per_mission"] = receiver.task_events / tasks  # none without -E
    return figures


def latency(worker: CeleryWorker, tasks: int, warmup: int, deadline: Deadline) -> dict[str, float]:
    """``tasks`` sequential noop tasks, each followed to its end: its task-succeeded event with
    events on, else its result through the rpc:// backend; also the send (apply) round trip."""
    submit: list[float] = []
    done: list[float] = []
    receiver = EventReceiver(worker.app)
    load1 = read_machine().load1
    with receiver.running(deadline) if worker.events else contextlib.nullcontext(receiver):
        for number in range(warmup + tasks):
            started = time.perf_counter()
            result = worker.app.send_task(NOOP)
            sent = time.perf_counter()
            arrived = receiver.arrival(result.id, deadline) if worker.events else math.nan
            result.get(timeout=deadline.remaining(60))
            if math.isnan(arrived):
                arrived = time.perf_counter()
            if number >= warmup:
                submit.append(sent - started)
                done.append(arrived - started)
    return {**latency_figures(submit, done), "load1": load1}
