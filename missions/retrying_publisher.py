"""Publishing that survives broker outages: an event is retried until it is confirmed.

A worker awaits each running mission's events in order, so at most a few events per
running mission wait here (memory is bounded by ``--concurrency``), and the delivery
is acked only after they are out. While the broker is away the attempt's outcome is
kept, not lost, and published as soon as it is back. The service retries the work
message of a mission whose CREATED or REDRIVEN the log already holds the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from missions.errors import BrokerUnavailableError
from missions.eventlog import EventPublisher
from missions.metrics import PublishedEvents
from missions.v1 import events_pb2

__all__ = ["RetryingPublisher"]

log = logging.getLogger(__name__)

_FIRST_RETRY_S = 0.1
_MAX_RETRY_S = 5.0


class RetryingPublisher:
    """Wraps an EventPublisher with retries; counts what is waiting and, given ``published``,
    what went out."""

    def __init__(self, publisher: EventPublisher, published: PublishedEvents | None = None) -> None:
        self.publisher = publisher
        self.waiting = 0
        self._published = published

    async def publish_once(self, event: events_pb2.MissionEvent, priority: int | None = None) -> None:
        """Publish ``event`` without retrying; raises BrokerUnavailableError if unconfirmed."""
        await self.publisher.publish(event, priority=priority)
        if self._published is not None:
            self._published.count(event)

    async def publish(
        self,
        event: events_pb2.MissionEvent,
        *,
        priority: int | None = None,
        wanted: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        """Publish ``event``, retrying until confirmed; False if dropped.

        ``wanted`` is asked before every retry: while the broker was away the event may
        have become wrong (the service declared the attempt lost), and then it is dropped.
        """
        return await self._until_confirmed(lambda: self.publish_once(event, priority), "event", event, wanted)

    async def dispatch(self, event: events_pb2.MissionEvent, *, priority: int | None = None) -> None:
        """Put ``event``'s work message on the work queue (EventPublisher.dispatch), retrying
        until confirmed."""
        await self._until_confirmed(
            lambda: self.publisher.dispatch(event, priority=priority), "work message of event", event
        )

    async def _until_confirmed(
        self,
        send: Callable[[], Awaitable[None]],
        what: str,
        event: events_pb2.MissionEvent,
        wanted: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        pause = _FIRST_RETRY_S
        self.waiting += 1
        try:
            while True:
                try:
                    await send()
                    return True
                except BrokerUnavailableError as exc:
                    log.warning(
                        "%s %s of mission %s not confirmed (%s); retrying", what, event.id, event.mission_id, exc
                    )
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _MAX_RETRY_S)
                if wanted is not None and not await wanted():
                    log.info("%s %s of mission %s is no longer wanted: dropped", what, event.id, event.mission_id)
                    return False
        finally:
            self.waiting -= 1
