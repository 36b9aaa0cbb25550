"""How many WatchEvents streams each principal holds open, against a limit."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from mission_service.tokens import Principal
from missions.errors import ResourceExhaustedError

__all__ = ["StreamQuota"]


class StreamQuota:
    """At most ``limit`` concurrent streams per principal name (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def acquire(self, name: str) -> bool:
        """Count one more stream of ``name``; False (and nothing counted) when it is at the limit."""
        if self.limit and self._open[name] >= self.limit:
            return False
        self._open[name] += 1
        return True

    def release(self, name: str) -> None:
        self._open[name] -= 1
        if self._open[name] <= 0:
            del self._open[name]

    def open(self, name: str) -> int:
        return self._open[name]

    @contextlib.contextmanager
    def stream(self, principal: Principal) -> Iterator[None]:
        """Count one stream of ``principal`` while the block runs; ResourceExhaustedError at the limit.

        Only authenticated principals count: otherwise every connection is a principal of its own.
        """
        if not principal.authenticated:
            yield
            return
        if not self.acquire(principal.name):
            message = (
                f"principal {principal.name!r} already has {self.limit} WatchEvents streams open,"
                f" the limit per principal (--max-watch-streams)"
            )
            raise ResourceExhaustedError(message, reason="TOO_MANY_STREAMS")
        try:
            yield
        finally:
            self.release(principal.name)
