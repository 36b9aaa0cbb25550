"""Where a watch stands, so that both clients resume a cut WatchEvents stream the same way.

A ``WatchCursor`` remembers the last sequence the stream delivered (an event's, a heartbeat's,
or the ``last_sequence`` the server names when it cuts the stream) and asks again with
``after_sequence`` set to it: no gap, and events at or before it are dropped, so no duplicate.
UNAVAILABLE (a restart, a replica stopping, the network) and RESOURCE_EXHAUSTED (too slow a
reader) are retried with full-jitter backoff; the count starts again once the stream delivers.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta

from missions import errors
from missions.backoff import full_jitter
from missions.v1 import events_pb2
from missions.v1 import mission_service_pb2 as pb

__all__ = ["WatchCursor"]

_BASE = timedelta(milliseconds=100)
_CAP = timedelta(seconds=5)


class WatchCursor:
    """The resume state of one watch.

    Args:
        request: the filters, and where to start.
        retries: failed attempts in a row after which the error is raised.
        deadline: ``time.monotonic()`` after which the watch gives up with TimeoutError.
    """

    def __init__(
        self,
        request: pb.WatchEventsRequest,
        *,
        retries: int,
        deadline: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._request = request
        self._last = request.after_sequence if request.HasField("after_sequence") else None
        self._retries = retries
        self._failures = 0
        self._deadline = deadline
        self._rng = rng

    @property
    def last_sequence(self) -> int | None:
        """The position a resume starts after; None while nothing is known."""
        return self._last

    def request(self) -> pb.WatchEventsRequest:
        """The request of the next attempt: the filters, after the last known position."""
        request = pb.WatchEventsRequest()
        request.CopyFrom(self._request)
        if self._last is not None:
            request.after_sequence = self._last
        return request

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None without one); TimeoutError once it has passed."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the watch's deadline passed")
        return left

    def accept(self, response: pb.WatchEventsResponse) -> events_pb2.MissionEvent | None:
        """The event to deliver, or None for a heartbeat or an event delivered already."""
        self._failures = 0
        if response.HasField("heartbeat"):
            self._advance(response.heartbeat.last_sequence)
            return None
        event = response.event
        if self._last is not None and event.sequence <= self._last:
            return None
        self._last = event.sequence
        return event

    def retry_delay(self, error: errors.ServiceError) -> float:
        """Seconds to wait before resuming after ``error``; raises it when it is not worth a retry."""
        if not isinstance(error, errors.UnavailableError | errors.ResourceExhaustedError):
            raise error
        self._failures += 1
        if self._failures > self._retries:
            raise error
        if "last_sequence" in error.metadata:
            self._advance(int(error.metadata["last_sequence"]))
        delay = full_jitter(self._failures, _BASE, _CAP, self._rng).total_seconds()
        remaining = self.remaining()
        if remaining is not None and delay >= remaining:
            raise TimeoutError("the watch's deadline passed while the service was away") from error
        return delay

    def _advance(self, sequence: int) -> None:
        # 0 is "nothing yet", not a position: after_sequence=0 would replay the whole log.
        if sequence > (self._last or 0):
            self._last = sequence
