"""End to end: scripts/up runs the service and a worker; when one of them dies it says which
and how, and stops the other; a signal to it stops both quietly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import re
import signal
import subprocess
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO

import pytest

from tests.support import Process, Stack, free_port, wait_serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

UP = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "up"

# scripts/up installs first (a few seconds, more on a busy machine), then both start.
_READY_S = 150
_EXIT_S = 60

Lines = asyncio.Queue[str | None]


def _members(namespace: str) -> Iterator[int]:
    """Every live process started for this test: they alone carry its namespace in their environment."""
    marker = f"MISSIONS_NAMESPACE={namespace}".encode()
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile, or not ours
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    yield int(entry.name)


def _children(pid: int) -> dict[str, int]:
    """scripts/up's mission-service and mission-worker, by name (pgrep -P lists direct children)."""
    listing = subprocess.run(["pgrep", "-a", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    found: dict[str, int] = {}
    for line in listing.splitlines():
        child, command = line.split(" ", 1)
        for name in ("mission-service", "mission-worker"):
            if f"bin/{name}" in command:
                found[name] = int(child)
    return found


@dataclass
class Up:
    """A running scripts/up. Its stderr, which its children share, goes line by line to
    ``lines`` (None at the end) and to the Process's log file, for failure messages."""

    process: Process
    namespace: str
    lines: asyncio.Queue[str | None]
    pump: threading.Thread

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        assert self.process.popen is not None
        return self.process.popen

    async def wait_for_line(self, pattern: str, timeout: float) -> None:
        """Wait for a line matching ``pattern``; fail at once if scripts/up reports a death or ends."""
        try:
            async with asyncio.timeout(timeout):
                while (line := await self.lines.get()) is not None:
                    if re.search(pattern, line):
                        return
                    if line.startswith("scripts/up:"):
                        break
        except TimeoutError:
            pass
        raise AssertionError(f"no line matching {pattern!r}:\n{self.process.output()}")

    async def exit_code(self) -> int:
        """Wait for scripts/up to end by itself (a TimeoutExpired fails the test), then for
        the last of its output (its pipe ends when no process holds it any more)."""
        code = await asyncio.to_thread(self.popen.wait, _EXIT_S)
        await asyncio.to_thread(self.pump.join, _EXIT_S)
        return code

    def own_lines(self) -> list[str]:
        return [line for line in self.process.output().splitlines() if line.startswith("scripts/up:")]

    def left_behind(self) -> list[int]:
        return [pid for pid in _members(self.namespace) if pid != self.popen.pid]

    def kill_everything(self) -> None:
        """SIGKILL scripts/up and all it started, its children being in sessions of their own."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGSTOP)  # no new children, none reaped, meanwhile
        for pid in self.left_behind():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self.pump.join(_EXIT_S)  # the pipe ends once every process that held it is gone


def _copy(source: IO[bytes], log_path: pathlib.Path, loop: asyncio.AbstractEventLoop, lines: Lines) -> None:
    with source, log_path.open("ab") as log:
        for raw in source:
            log.write(raw)
            log.flush()
            loop.call_soon_threadsafe(lines.put_nowait, raw.decode(errors="replace").rstrip("\n"))
    loop.call_soon_threadsafe(lines.put_nowait, None)


def _start_up(stack: Stack, *worker_args: str) -> Up:
    """scripts/up on the stack's namespace, port and state directory (a Process only for its
    output and liveness: it is no python -m module)."""
    env = {**stack.env(), "MISSIONS_HTTP_LISTEN": f"127.0.0.1:{free_port()}"}
    process = Process([str(UP), *worker_args], env, stack.directory / "up.err")
    with (stack.directory / "up.out").open("wb") as out:
        popen = process.popen = subprocess.Popen(
            process.argv,
            env={**os.environ, **process.env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    assert popen.stderr is not None
    lines: Lines = asyncio.Queue()
    pump = threading.Thread(
        target=_copy, args=(popen.stderr, process.log_path, asyncio.get_running_loop(), lines), daemon=True
    )
    pump.start()
    return Up(process, stack.namespace, lines, pump)


@contextlib.asynccontextmanager
async def _up(stack: Stack, *worker_args: str) -> AsyncIterator[Up]:
    """A running scripts/up, killed with all it started afterwards, whatever happened."""
    up = _start_up(stack, *worker_args)
    try:
        yield up
    finally:
        up.kill_everything()


@contextlib.asynccontextmanager
async def _both_serving(stack: Stack) -> AsyncIterator[tuple[Up, dict[str, int]]]:
    """scripts/up with the service SERVING and the worker consuming."""
    async with _up(stack, "--worker-id", "up-worker") as up:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(up.wait_for_line(r"worker up-worker consuming", _READY_S))
            tasks.create_task(wait_serving(stack.target, up.process, timeout=_READY_S))
        children = _children(up.popen.pid)
        assert set(children) == {"mission-service", "mission-worker"}, up.process.output()
        url = f"http://{up.process.env['MISSIONS_HTTP_LISTEN']}/"
        assert f"Dashboard: {url} " in (stack.directory / "up.out").read_text()
        dashboard = await asyncio.to_thread(urllib.request.urlopen, url, timeout=_EXIT_S)
        assert b"<title>Missions</title>" in dashboard.read()
        yield up, children


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_killed_worker_is_reported_and_the_service_stopped(stack: Stack) -> None:
    async with _both_serving(stack) as (up, children):
        worker, service = children["mission-worker"], children["mission-service"]
        os.kill(worker, signal.SIGKILL)

        assert await up.exit_code() == 128 + signal.SIGKILL
        assert up.own_lines() == [
            f"scripts/up: mission-worker (pid {worker}) killed by SIGKILL; stopping mission-service"
        ], up.process.output()
        assert _gone(service), up.process.output()
        assert up.left_behind() == []


async def test_a_worker_that_exits_is_reported_with_its_code(stack: Stack) -> None:
    # The worker refuses an unknown flag (argparse: exit code 2) as soon as it starts.
    async with _up(stack, "--no-such-flag") as up:
        assert await up.exit_code() == 2
        lines = up.own_lines()
        pattern = r"scripts/up: mission-worker \(pid \d+\) exited with code 2; stopping mission-service"
        assert lines and re.fullmatch(pattern, lines[0]), up.process.output()
        assert up.left_behind() == []


async def test_sigterm_stops_both_quietly_with_exit_code_0(stack: Stack) -> None:
    async with _both_serving(stack) as (up, children):
        up.popen.send_signal(signal.SIGTERM)

        assert await up.exit_code() == 0, up.process.output()
        assert up.own_lines() == [], up.process.output()
        assert all(_gone(pid) for pid in children.values())
        assert up.left_behind() == []
        # One SIGTERM each: a second would make them exit at once, without draining.
        assert up.process.output().count("SIGTERM received: shutting down") == 2
        assert "exiting now" not in up.process.output()
