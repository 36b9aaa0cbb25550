"""Work messages: a mission reaches the work queue only after the log holds the event
(CREATED or REDRIVEN) that queued it, so no worker event can precede that event in the log.

Once the log has confirmed the event, its work message must follow: it is retried until
the broker confirms it, and keeps being retried when the RPC that asked for it ends.
"""

from __future__ import annotations

import asyncio
import logging

from missions.outbox import Outbox
from missions.v1 import events_pb2

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)


class Dispatcher:
    """Puts work messages on the work queue, at most one in flight per mission."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._in_flight: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._in_flight)

    def dispatching(self, mission_id: str) -> bool:
        return mission_id in self._in_flight

    async def dispatch(self, event: events_pb2.MissionEvent, priority: int | None = None) -> None:
        """Return once the work message of ``event`` is confirmed; cancelling the caller
        does not stop it."""
        task = self._in_flight.get(event.mission_id)
        if task is None:
            task = asyncio.create_task(
                self._outbox.dispatch(event, priority=priority), name=f"dispatch {event.mission_id}"
            )
            self._in_flight[event.mission_id] = task
            task.add_done_callback(lambda done: self._forget(event.mission_id, done))
        await asyncio.shield(task)

    def _forget(self, mission_id: str, task: asyncio.Task[None]) -> None:
        if self._in_flight.get(mission_id) is task:
            del self._in_flight[mission_id]

    async def close(self) -> None:
        """Stop the work messages still being retried, naming their missions: they stay
        QUEUED until a retried SubmitMission (same idempotency key) dispatches them again."""
        tasks = list(self._in_flight.items())
        for mission_id, task in tasks:
            log.error("mission %s: work message not confirmed before shutdown; it stays QUEUED", mission_id)
            task.cancel()
        await asyncio.gather(*(task for _, task in tasks), return_exceptions=True)
