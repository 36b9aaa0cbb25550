"""End to end: the README's walk-through, done by a Python service with missions.Client.

Each step of "Walk-through with missionctl" is replayed as the client call that does the
same, against the real service and worker processes, and checked; a shorter pass does it
with AsyncClient. The README's own lines start and stop the second worker, in a shell, as
a reader runs them, and its "From Python" block (docs/clients.md shows the same) runs as
it stands. The live views (``missionctl watch`` without ``--after``, ``top``) are the
same calls (watch, workers, stats) refreshed, and are not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import re
import signal
import subprocess
import sys
from asyncio import to_thread
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from missions.client import AsyncClient, Client, MissionFailed, payload_dict, result_dict
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from tests.docs_blocks import ROOT, readme_python_block, walkthrough_line
from tests.support import Stack, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DEADLINE = 120.0
E = events_pb2
M = mission_pb2
BUILTIN = ["echo", "fail", "noop", "sleep"]
# Short backoff: the walk-through's retries then take a fraction of a second, not seconds.
WORKER_ARGS = ("--retry-base", "0.1")
INVALID_WIDTH = "payload.width: must be positive"


class ReaderShell:
    """A bash fed lines one at a time, as a reader's terminal runs the README's: from the
    repository's root, with the stack's settings and this Python's scripts on PATH (as
    ``source .venv/bin/activate`` puts them). Its output goes to ``shell.log``."""

    def __init__(self, stack: Stack) -> None:
        scripts = pathlib.Path(sys.executable).parent
        env = {**os.environ, **stack.env(), "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
        self.log_path = stack.directory / "shell.log"
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                ["bash"], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True
            )

    def run(self, line: str) -> None:
        assert self._popen.stdin is not None
        self._popen.stdin.write(f"{line}\n".encode())
        self._popen.stdin.flush()

    async def exit_code(self) -> int:
        """Close the shell's input and wait for it to end; its exit code."""
        assert self._popen.stdin is not None
        self._popen.stdin.close()
        return await to_thread(self._popen.wait, DEADLINE)

    def kill(self) -> None:
        """Kill the shell and what it started: without job control, its jobs share its process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        self._popen.wait()


@contextlib.asynccontextmanager
async def reader_shell(stack: Stack) -> AsyncIterator[ReaderShell]:
    shell = ReaderShell(stack)
    try:
        yield shell
    finally:
        shell.kill()


def start_second_worker(shell: ReaderShell) -> None:
    """The README's line that starts the worker of examples/handlers (resize-image)."""
    shell.run(walkthrough_line("mission-worker --handlers mypkg.handlers"))


async def stop_second_worker(shell: ReaderShell) -> None:
    """The README's last line, then wait for the worker it stopped: a clean exit (0)."""
    shell.run(walkthrough_line("kill "))
    shell.run('wait "$!"; exit $?')  # the worker is the shell's only background job
    assert await shell.exit_code() == 0, shell.log_path.read_text(errors="replace")


async def workers_until(
    fetch: Callable[[], Awaitable[list[worker_pb2.Worker]]], check: Callable[[list[worker_pb2.Worker]], bool], what: str
) -> list[worker_pb2.Worker]:
    """ListWorkers until ``check`` holds (heartbeats have no event to wait on); the last answer."""
    seen: list[worker_pb2.Worker] = []

    async def holds() -> bool:
        seen[:] = await fetch()
        return check(seen)

    await eventually(holds, what, timeout=DEADLINE)
    return seen


def serving(types: list[str]) -> Callable[[list[worker_pb2.Worker]], bool]:
    """Whether an ACTIVE worker serves exactly ``types``."""
    return lambda workers: any(
        worker.state == worker_pb2.WORKER_STATE_ACTIVE and list(worker.handler_types) == types for worker in workers
    )


def _log_through(client: Client, last: events_pb2.MissionEvent) -> list[events_pb2.MissionEvent]:
    """``missionctl watch --after 0``: the whole retained log, read here up to ``last``."""
    events = []
    for event in client.watch(after_sequence=0):
        events.append(event)
        if event.sequence >= last.sequence:
            return events
    raise AssertionError("a watch without mission ids ended")


async def test_the_walk_through_step_by_step_with_the_client(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker(*WORKER_ARGS)
    with Client(stack.target) as client:
        # missionctl submit echo --payload '{"hello": "world"}' --wait
        hello = await to_thread(client.submit, "echo", {"hello": "world"})
        assert await to_thread(client.result, hello.id, timeout=DEADLINE) == {"hello": "world"}
        # missionctl submit sleep --payload '{"seconds": 3}' --priority high --wait
        nap = await to_thread(client.submit, "sleep", {"seconds": 0.2}, priority="high")
        assert nap.priority == M.PRIORITY_HIGH  # its state: QUEUED, or RUNNING if a worker was quick
        assert await to_thread(client.result, nap.id, timeout=DEADLINE) == {"slept": 0.2}
        # missionctl submit fail --payload '{"fail_times": 2}' --wait: two RETRYING, then SUCCEEDED
        flaky = await to_thread(client.submit, "fail", {"fail_times": 2})
        result = await to_thread(client.result, flaky.id, timeout=DEADLINE)
        assert result == {"attempts": 3} and type(result["attempts"]) is int

        # missionctl list --state succeeded
        succeeded = await to_thread(list, client.list(states=[M.MISSION_STATE_SUCCEEDED]))
        assert [mission.id for mission in succeeded] == [hello.id, nap.id, flaky.id]  # oldest first
        # missionctl get <mission id> -o json
        got = await to_thread(client.get, flaky.id)
        assert (got.state, got.attempt, got.type) == (M.MISSION_STATE_SUCCEEDED, 3, "fail")
        assert payload_dict(got) == {"fail_times": 2} and result_dict(got) == {"attempts": 3}
        # missionctl watch --mission <mission id> --plain: its history; ends when it is final
        history = await to_thread(list, client.watch(mission_ids=[flaky.id]))
        kinds = [event.type for event in history]
        attempt_failed = [E.EVENT_TYPE_STARTED, E.EVENT_TYPE_FAILED, E.EVENT_TYPE_RETRYING]
        assert kinds == [E.EVENT_TYPE_CREATED, *attempt_failed * 2, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]
        assert kinds.count(E.EVENT_TYPE_RETRYING) == 2
        # missionctl watch --after 0 --plain: the whole retained log
        log = await to_thread(_log_through, client, history[-1])
        assert [event.sequence for event in log] == sorted({event.sequence for event in log})
        assert {event.mission_id for event in log} == {hello.id, nap.id, flaky.id}
        assert [event.id for event in log if event.mission_id == flaky.id] == [event.id for event in history]

        # missionctl workers: heartbeats with state, load and handler types
        workers = await workers_until(lambda: to_thread(client.workers), serving(BUILTIN), "the worker's heartbeat")
        assert [worker.id for worker in workers] == ["worker-0"]
        # missionctl stats: counts per state, queue depths, last hour
        stats = await to_thread(client.stats)
        assert {count.state: count.count for count in stats.states} == {M.MISSION_STATE_SUCCEEDED: 3}
        assert (stats.succeeded_last_hour, stats.failed_last_hour, stats.running) == (3, 0, 0)

        # missionctl submit fail --max-attempts 2 --wait: fails every attempt, dead-lettered
        doomed = await to_thread(client.submit, "fail", max_attempts=2)
        with pytest.raises(MissionFailed) as failed:
            await to_thread(client.result, doomed.id, timeout=DEADLINE)
        assert (failed.value.error.type, failed.value.error.message) == ("FailError", "failed on purpose")
        # missionctl dead-letters: failed for good, with the last error
        dead = await to_thread(list, client.dead_letters())
        assert [(mission.id, mission.attempt, mission.error.message) for mission in dead] == [
            (doomed.id, 2, "failed on purpose")
        ]
        # missionctl redrive <mission id> --max-attempts 5: queued again with a fresh budget ...
        redriven = await to_thread(client.redrive, doomed.id, max_attempts=5)
        assert (redriven.dead_lettered, redriven.max_attempts, redriven.redrive_count) == (False, 5, 1)
        # ... and it runs again (the answer may show it RUNNING already): five attempts, dead-lettered again
        rerun = await to_thread(list, client.watch(mission_ids=[doomed.id], after_sequence=dead[0].last_sequence))
        assert rerun[0].type == E.EVENT_TYPE_REDRIVEN
        assert (rerun[0].redriven.mission.state, rerun[0].redriven.mission.attempt) == (M.MISSION_STATE_QUEUED, 0)
        rerun_kinds = [event.type for event in rerun]
        assert rerun_kinds.count(E.EVENT_TYPE_STARTED) == 5 and rerun_kinds[-1] == E.EVENT_TYPE_DEAD_LETTERED
        assert [mission.id for mission in await to_thread(list, client.dead_letters())] == [doomed.id]
        # missionctl purge-dead-letters --type fail --dry-run: in bulk, which would be purged
        would = await to_thread(client.purge_dead_letters, type="fail", dry_run=True)
        assert (would.count, list(would.mission_ids)) == (1, [doomed.id])
        assert (await to_thread(client.stats)).dead_letter_depth == 1  # what dead-letters lists

        # missionctl list --state succeeded -o jsonl: the service's pages, for scripts
        pages = await to_thread(list, client.list_pages(states=[M.MISSION_STATE_SUCCEEDED], page_size=2))
        assert [[mission.id for mission in page.missions] for page in pages] == [[hello.id, nap.id], [flaky.id]]

        # missionctl submit resize-image --payload '{"url": ...}': no worker handles it yet
        image = await to_thread(client.submit, "resize-image", {"url": "https://example.com/cat.png"})
        # missionctl stats: so it waits QUEUED, flagged: its type has no live worker
        by_type = {kind.mission_type: kind for kind in (await to_thread(client.stats)).mission_types}
        assert (by_type["resize-image"].waiting, by_type["resize-image"].active_workers) == (1, 0)
        assert by_type["echo"].active_workers == 1
        assert (await to_thread(client.get, image.id)).state == M.MISSION_STATE_QUEUED

        async with reader_shell(stack) as shell:
            start_second_worker(shell)  # a second worker, for resize-image only
            # missionctl list --type resize-image: ... which ran the waiting mission
            assert await to_thread(client.result, image.id, timeout=DEADLINE) == {"width": 640}
            resized = await to_thread(list, client.list(type="resize-image"))
            assert [(mission.id, mission.state) for mission in resized] == [(image.id, M.MISSION_STATE_SUCCEEDED)]
            await workers_until(lambda: to_thread(client.workers), serving(["resize-image"]), "the second worker")
            # missionctl submit resize-image --payload '{"url": "x", "width": 0}' --wait: fails at once
            invalid = await to_thread(client.submit, "resize-image", {"url": "x", "width": 0})
            with pytest.raises(MissionFailed) as refused:
                await to_thread(client.result, invalid.id, timeout=DEADLINE)
            error = refused.value.error
            assert (error.type, error.message, error.retryable) == ("InvalidPayload", INVALID_WIDTH, False)
            assert refused.value.mission.attempt == 1  # no retry
            # kill $worker
            await stop_second_worker(shell)
        await workers_until(
            lambda: to_thread(client.workers), lambda workers: not serving(["resize-image"])(workers), "it stopped"
        )


async def test_the_walk_through_in_short_with_the_async_client(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker(*WORKER_ARGS)
    async with AsyncClient(stack.target) as client:
        hello = await client.submit("echo", {"hello": "world"})
        assert await client.result(hello.id, timeout=DEADLINE) == {"hello": "world"}
        flaky = await client.submit("fail", {"fail_times": 2}, priority="high")
        assert await client.result(flaky.id, timeout=DEADLINE) == {"attempts": 3}
        kinds = [event.type async for event in client.watch(mission_ids=[flaky.id])]
        assert kinds.count(E.EVENT_TYPE_RETRYING) == 2 and kinds[-1] == E.EVENT_TYPE_COMPLETED
        succeeded = [mission.id async for mission in client.list(states=[M.MISSION_STATE_SUCCEEDED])]
        assert succeeded == [hello.id, flaky.id]
        await workers_until(client.workers, serving(BUILTIN), "the worker's heartbeat")

        doomed = await client.submit("fail", max_attempts=2)
        with pytest.raises(MissionFailed):
            await client.result(doomed.id, timeout=DEADLINE)
        assert [mission.id async for mission in client.dead_letters()] == [doomed.id]
        dead = (await client.get(doomed.id)).last_sequence
        assert (await client.redrive(doomed.id, max_attempts=5)).redrive_count == 1
        rerun = [event.type async for event in client.watch(mission_ids=[doomed.id], after_sequence=dead)]
        assert rerun.count(E.EVENT_TYPE_STARTED) == 5 and rerun[-1] == E.EVENT_TYPE_DEAD_LETTERED

        image = await client.submit("resize-image", {"url": "https://example.com/cat.png"})
        waiting = [kind.mission_type for kind in (await client.stats()).mission_types if not kind.active_workers]
        assert waiting == ["resize-image"]
        async with reader_shell(stack) as shell:
            start_second_worker(shell)
            assert await client.result(image.id, timeout=DEADLINE) == {"width": 640}
            invalid = await client.submit("resize-image", {"url": "x", "width": 0})
            with pytest.raises(MissionFailed) as refused:
                await client.result(invalid.id, timeout=DEADLINE)
            assert (refused.value.error.type, refused.value.error.message) == ("InvalidPayload", INVALID_WIDTH)
            await stop_second_worker(shell)


async def test_the_readmes_python_block_does_the_walk_through(stack: Stack) -> None:
    """The block runs as a program with MISSIONS_SERVER set and prints what its comments say;
    it waits at the resize-image mission until the README's line starts the second worker."""
    await stack.start_service()
    stack.start_worker(*WORKER_ARGS)
    async with AsyncClient(stack.target) as client:  # the README's stack is up: its worker announced
        await workers_until(client.workers, serving(BUILTIN), "the worker's heartbeat")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MISSIONS_")}
    env |= {"MISSIONS_SERVER": stack.target, "XDG_CONFIG_HOME": str(stack.directory / "xdg"), "PYTHONUNBUFFERED": "1"}
    program = await asyncio.create_subprocess_exec(
        sys.executable, "-c", readme_python_block(), env=env, stdout=asyncio.subprocess.PIPE, cwd=stack.directory
    )
    assert program.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(DEADLINE), reader_shell(stack) as shell:
            while (line := (await program.stdout.readline()).decode()) != "":
                lines.append(line.rstrip("\n"))
                if line == "['resize-image']\n":
                    start_second_worker(shell)
            assert await program.wait() == 0, lines
            await stop_second_worker(shell)
    finally:
        if program.returncode is None:
            program.kill()
            await program.wait()
    history = ["CREATED", *["STARTED", "FAILED", "RETRYING"] * 2, "STARTED", "COMPLETED"]
    assert [_placeholders(line) for line in lines] == [
        "{'hello': 'world'}",
        "{'attempts': 3}",
        *[f"<sequence> EVENT_TYPE_{name}" for name in history],
        "['<id>', '<id>']",
        f"[('worker-0', {BUILTIN})]",
        "failed on purpose",
        "['<id>']",
        "1",
        "['resize-image']",
        "{'width': 640}",
        f"InvalidPayload {INVALID_WIDTH}",
    ]


def _placeholders(line: str) -> str:
    """``line`` with its mission ids and leading sequence, which change from run to run, as placeholders."""
    return re.sub(r"^[0-9]+ ", "<sequence> ", re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "<id>", line))
