"""The loops a service replica runs until it stops (log follower, reaper, scheduler, legacy work), in one TaskGroup.

A loop that ends, fails, or is cancelled by anyone but the stop (a library's
cancellation from a broken connection) is a failure of the replica. It is recorded and
reported through ``failed`` rather than raised into the TaskGroup: a TaskGroup would
cancel every other loop at once, and the gRPC server, whose calls use the loops, must
stop first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Loop", "Loops"]

log = logging.getLogger(__name__)

Loop = Callable[[], Coroutine[Any, Any, None]]


class Loops:
    """Starts loops in ``group`` and cancels them on ``stop``; ``failure`` is the first that failed."""

    def __init__(self, group: asyncio.TaskGroup) -> None:
        self._group = group
        self._tasks: list[asyncio.Task[None]] = []
        self.failed = asyncio.Event()
        self.failure: RuntimeError | None = None

    def start(self, name: str, loop: Loop, *, may_end: bool = False) -> None:
        """Run ``loop()`` until ``stop``; with ``may_end``, a loop that returns has simply finished."""
        self._tasks.append(self._group.create_task(self._guarded(name, loop, may_end), name=name))

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _guarded(self, name: str, loop: Loop, may_end: bool) -> None:
        try:
            await loop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            self._fail(RuntimeError(f"background task {name} was cancelled"))
        except Exception as exc:
            failure = RuntimeError(f"background task {name} stopped")
            failure.__cause__ = exc
            self._fail(failure)
        else:
            if not may_end:
                self._fail(RuntimeError(f"background task {name} stopped"))

    def _fail(self, failure: RuntimeError) -> None:
        if self.failure is None:
            self.failure = failure
        else:  # the replica is stopping for the first already; say that this one failed too
            log.error("%s", failure, exc_info=failure.__cause__)
        self.failed.set()
