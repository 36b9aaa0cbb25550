"""End to end: a second mission-service on a port or a state directory in use stops at start, in one line."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from tests.support import Process, Stack, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def _refused(stack: Stack, name: str, **env: str) -> str:
    """Start a second service with ``env`` over the stack's; wait for it to exit 1 and return its output."""
    second = Process(["mission_service"], {**stack.env(), **env}, stack.directory / f"{name}.log").start()
    try:
        code = await asyncio.to_thread(second.wait, 90)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the second service did not stop:\n{second.output()}") from None
    finally:
        second.kill()
    output = second.output()
    assert code == 1, output
    assert "Traceback" not in output
    return output


async def test_a_second_service_on_a_port_in_use_stops_with_address_already_in_use(stack: Stack) -> None:
    await stack.start_service()
    output = await _refused(stack, "same-port", MISSIONS_STATE_DIR=str(stack.directory / "other"))
    # That one line and nothing else: no broker connection first, no line of gRPC's core.
    assert output.endswith(f" ERROR missions.process: cannot listen on {stack.target}: address already in use\n")
    assert len(output.splitlines()) == 1, output
    assert stack.service is not None and stack.service.alive


async def test_a_second_service_on_a_state_directory_in_use_stops_naming_the_holders_pid(stack: Stack) -> None:
    first = await stack.start_service()
    assert first.popen is not None
    state = stack.directory / "state"
    output = await _refused(stack, "same-state", MISSIONS_LISTEN=f"127.0.0.1:{free_port()}")
    assert (
        f"ERROR missions.process: state directory {state} is in use by another mission-service"
        f" (pid {first.popen.pid}); give each replica its own --state-dir\n"
    ) in output
    assert "connected to" not in output  # refused before it touched the broker
    assert first.alive
    first.kill()  # SIGKILL: no clean-up runs; the kernel drops the lock (and the socket)
    await stack.start_service()  # the same state directory and port
