"""What a handler sees of its mission: identity, labels, progress and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["MissionContext"]

ProgressSink = Callable[[float, str], Awaitable[None]]


@dataclass
class MissionContext:
    """Handed to every handler call.

    Attributes:
        mission_id: id of the mission.
        mission_type: the handler type it was submitted with.
        attempt: the current attempt, 1-based.
        max_attempts: attempts allowed in all.
        labels: the labels given at submission.
        cancelled: set when the attempt is being stopped (timeout, cancellation or
            worker shutdown); a cooperative handler checks it and returns early.
    """

    mission_id: str
    mission_type: str
    attempt: int
    max_attempts: int
    labels: Mapping[str, str]
    _progress: ProgressSink
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def report_progress(self, fraction: float, message: str = "") -> None:
        """Publish a PROGRESS event; ``fraction`` is clamped to 0..1."""
        await self._progress(min(max(fraction, 0.0), 1.0), message)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts
