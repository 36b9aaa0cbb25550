"""The state directory lock: one holder at a time, named by its pid, freed by close or by death."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

from mission_service.state_lock import LOCK_FILE, StateDirInUseError, StateLock
from missions.startup import StartupError

pytestmark = pytest.mark.timeout(60)

# Takes the lock on argv[1], says so, then holds it until killed.
_HOLDER = """
import sys, pathlib
from mission_service.state_lock import StateLock
lock = StateLock.acquire(pathlib.Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_lock_on_the_same_directory_is_refused_with_the_holders_pid(tmp_path: pathlib.Path) -> None:
    with StateLock.acquire(tmp_path / "state"), pytest.raises(StateDirInUseError) as refused:
        StateLock.acquire(tmp_path / "state")
    assert refused.value.pid == os.getpid()
    assert isinstance(refused.value, StartupError)  # reported as one line at start-up
    assert str(refused.value) == (
        f"state directory {tmp_path / 'state'} is in use by another mission-service (pid {os.getpid()});"
        " give each replica its own --state-dir"
    )


def test_the_lock_file_holds_the_pid_while_locked_and_is_freed_by_close(tmp_path: pathlib.Path) -> None:
    lock = StateLock.acquire(tmp_path)
    assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    lock.close()
    lock.close()  # idempotent
    assert (tmp_path / LOCK_FILE).read_text() == ""
    with StateLock.acquire(tmp_path):
        pass


def test_other_directories_are_independent(tmp_path: pathlib.Path) -> None:
    with StateLock.acquire(tmp_path / "a"), StateLock.acquire(tmp_path / "b"):
        pass


def test_a_holder_killed_with_sigkill_frees_the_lock(tmp_path: pathlib.Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"  # bounded by the test's timeout
        with pytest.raises(StateDirInUseError) as refused:
            StateLock.acquire(tmp_path)
        assert refused.value.pid == holder.pid
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(30) == -signal.SIGKILL
    finally:
        holder.kill()
        holder.wait()
        if holder.stdin is not None:
            holder.stdin.close()
        if holder.stdout is not None:
            holder.stdout.close()
    with StateLock.acquire(tmp_path):  # the kernel dropped the dead holder's lock
        pass
