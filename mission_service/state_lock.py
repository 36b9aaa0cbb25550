"""One service per state directory: an exclusive flock on a lock file in it, with the holder's pid."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from types import TracebackType

from missions.startup import StartupError

__all__ = ["LOCK_FILE", "StateDirInUseError", "StateLock"]

LOCK_FILE = "mission-service.lock"


class StateDirInUseError(StartupError):
    """Another live process holds the state directory's lock; ``pid`` is its pid (None if unknown)."""

    def __init__(self, directory: pathlib.Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"state directory {directory} is in use by another mission-service ({holder});"
            " give each replica its own --state-dir"
        )
        self.directory = directory
        self.pid = pid


class StateLock:
    """An exclusive lock on a state directory, held until ``close()`` or the process's end.

    flock, not fcntl's record locks: the kernel drops it when the last descriptor of the
    open file closes, so a crashed or SIGKILLed holder frees it, and a second open in the
    same process conflicts too. The file stays behind; unlinking it would let a process
    that opened the old file and one that created a new one both hold "the" lock.
    """

    def __init__(self, directory: pathlib.Path, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: pathlib.Path) -> StateLock:
        """Create ``directory`` if needed and lock it; raises StateDirInUseError if another holds it."""
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirInUseError(directory, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(directory, fd)

    def close(self) -> None:
        """Release the lock (idempotent); the pid is cleared first, so no reader sees a stale one."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # releases the flock

    def __enter__(self) -> StateLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _read_pid(fd: int) -> int | None:
    """The pid in the lock file; None when the holder has not written it yet."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
