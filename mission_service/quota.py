"""How many WatchEvents streams each principal holds open, against a limit."""

from __future__ import annotations

from collections import Counter

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
