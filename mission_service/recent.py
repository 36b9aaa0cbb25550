"""The latest events a replica has applied, kept in memory for watches that start near the tail.

A client that submits a mission and then watches it (``missionctl submit --wait``) asks
for the log from just before its CREATED. Served from the broker, every such watch opens
a stream consumer, whose start costs more the longer the log; served from here, it costs
a list slice. The window holds every event a reader sees (no duplicates) after
``covers_after``, and is bounded in events and in bytes: the oldest go first. Events are
kept encoded (about 250 bytes each in memory against some 1,500 as message objects) and
decoded when a replay asks for them: a few, for the replays this is for.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence

from missions.v1 import events_pb2

__all__ = ["DEFAULT_RECENT_BYTES", "DEFAULT_RECENT_EVENTS", "RecentEvents"]

DEFAULT_RECENT_EVENTS = 50_000
DEFAULT_RECENT_BYTES = 32 * 1024 * 1024


class RecentEvents:
    """A bounded window of the latest events, in log order."""

    def __init__(
        self, covers_after: int, max_events: int = DEFAULT_RECENT_EVENTS, max_bytes: int = DEFAULT_RECENT_BYTES
    ) -> None:
        """``covers_after``: the position the window starts at (it holds every event after it
        that ``extend`` is given)."""
        self.covers_after = covers_after
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._events: deque[tuple[int, bytes]] = deque()  # (sequence, encoded event)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._events)

    def extend(self, events: Iterable[events_pb2.MissionEvent]) -> None:
        """Add the next events the log shows readers (in order), dropping the oldest beyond the bounds."""
        for event in events:
            encoded = event.SerializeToString()
            self._events.append((event.sequence, encoded))
            self.bytes += len(encoded)
        while self._events and (len(self._events) > self._max_events or self.bytes > self._max_bytes):
            self.covers_after, dropped = self._events.popleft()
            self.bytes -= len(dropped)

    def restart(self, covers_after: int) -> None:
        """Hold nothing, and start over after ``covers_after`` (the events before it were never seen)."""
        self._events.clear()
        self.bytes = 0
        self.covers_after = covers_after

    def after(self, sequence: int) -> Sequence[events_pb2.MissionEvent] | None:
        """Every event with a greater sequence, oldest first; None when the window no longer
        holds all of them (``sequence`` is older than ``covers_after``)."""
        if sequence < self.covers_after:
            return None
        # From the newest back: a watch near the tail (the case this is for) walks a few.
        newer = list(itertools.takewhile(lambda kept: kept[0] > sequence, reversed(self._events)))
        return [events_pb2.MissionEvent.FromString(encoded) for _, encoded in reversed(newer)]
