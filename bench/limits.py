"""The suite's global time bound, shared by every scenario and both sides."""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Deadline"]


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point on the monotonic clock after which every wait gives up."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self, cap: float | None = None) -> float:
        """Seconds left (at most ``cap``); raises TimeoutError once the deadline has passed."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the suite's --timeout has passed")
        return left if cap is None else min(left, cap)
