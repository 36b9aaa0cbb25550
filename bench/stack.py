"""A throwaway stack for benchmarks: a fresh namespace, one mission-service and its workers.

The processes are the real entry points (``python -m mission_service`` and
``python -m worker_service``), started by the same helpers as the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence

import aio_pika

from missions.amqp import delete_topology
from missions.topology import Topology
from tests.support import Process, Stack, free_port, wait_serving

__all__ = ["DEFAULT_AMQP_URL", "delete_namespace", "running_stack", "service_pid", "worker_pids"]

DEFAULT_AMQP_URL = os.environ.get("MISSIONS_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

# How long a process gets to stop on SIGTERM before it is killed.
_STOP_TIMEOUT_S = 20


async def delete_namespace(amqp_url: str, namespace: str) -> None:
    """Delete a namespace's queues and exchanges, with the work queues of the built-in mission
    types the benchmarks use (delay queues expire by themselves)."""
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": f"bench cleanup {namespace}"})
    async with connection:
        await delete_topology(connection, Topology(namespace), ("noop", "echo", "sleep", "fail"))


def service_pid(stack: Stack) -> int:
    """The pid of the stack's mission-service process (the Python interpreter itself)."""
    if stack.service is None or stack.service.popen is None:
        raise RuntimeError("the stack has no running service")
    return stack.service.popen.pid


def worker_pids(stack: Stack) -> list[int]:
    """The pids of the stack's mission-worker processes."""
    return [worker.popen.pid for worker in stack.workers if worker.popen is not None]


def _stop(process: Process) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.stop(signal.SIGTERM, timeout=_STOP_TIMEOUT_S)


def _tail(process: Process, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(process.output().splitlines()[-lines:])
    return "(no output)"


@contextlib.asynccontextmanager
async def running_stack(
    amqp_url: str = DEFAULT_AMQP_URL,
    *,
    workers: int = 2,
    service_args: Sequence[str] = (),
    worker_args: Sequence[str] = (),
    service_profile: pathlib.Path | None = None,
) -> AsyncIterator[Stack]:
    """One mission-service and ``workers`` workers in a namespace ``bench-<uuid>``, all SERVING.

    The state directory and the process logs live in a temporary directory. On exit the
    workers drain and stop, then the service, then the namespace's queues and exchanges
    are deleted; if the body failed, the tail of each process's log goes to stderr first.
    With ``service_profile``, the service runs under cProfile and writes its profile there
    when it stops (its figures are then inflated by the profiler).
    """
    namespace = f"bench-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix=f"{namespace}-") as directory:
        stack = Stack(namespace, amqp_url, pathlib.Path(directory))
        try:
            if service_profile is None:
                await stack.start_service(*service_args)
            else:
                argv = ["cProfile", "-o", str(service_profile), "-m", "mission_service", *service_args]
                stack.service = Process(argv, stack.env(), stack.directory / "service.log").start()
                await wait_serving(stack.target, stack.service)
            for _ in range(workers):
                health = f"127.0.0.1:{free_port()}"
                worker = stack.start_worker("--health-listen", health, *worker_args)
                await wait_serving(health, worker)
            yield stack
        except BaseException:
            for process in [*([stack.service] if stack.service else []), *stack.workers]:
                print(f"--- {process.argv[0]} log tail ---\n{_tail(process)}", file=sys.stderr)
            raise
        finally:
            # Workers first, so they drain while the service still follows the log.
            await asyncio.gather(*(asyncio.to_thread(_stop, worker) for worker in stack.workers))
            if stack.service is not None:
                await asyncio.to_thread(_stop, stack.service)
            await stack.close()
            await delete_namespace(amqp_url, namespace)
