"""WatchEvents: filters, live fan-out to bounded subscriber buffers, replay hand-over."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

from mission_service.filters import EventFilter, IndexKey, event_keys
from missions.errors import ServiceStoppingError, StreamEndedError, SubscriberLaggingError
from missions.events import is_final
from missions.v1 import events_pb2

__all__ = [
    "EventFilter",
    "Hub",
    "Idle",
    "Subscription",
    "WatchStats",
    "watch",
]

# Events a subscriber may have waiting before it is cut off as too slow.
DEFAULT_BUFFER = 10_000


@dataclass(slots=True)
class WatchStats:
    """What happened to a hub's subscribers so far: streams cut off (too slow, or this
    replica stopping) and PROGRESS events replaced by a newer one while waiting."""

    lagging: int = 0
    stopping: int = 0
    coalesced: int = 0


@dataclass(eq=False)
class Subscription:
    """One live subscriber's bounded buffer of events waiting to be sent, in log order.

    Once the buffer is half full, a PROGRESS event replaces the same mission's latest
    PROGRESS still waiting (latest wins, at the newer position so order holds); every
    other event takes a place of its own, and one that finds the buffer full ends the
    stream with SubscriberLaggingError.
    """

    filter: EventFilter
    head: int
    capacity: int = DEFAULT_BUFFER
    ended: type[StreamEndedError] | None = None
    coalesced: int = 0
    stats: WatchStats = field(default_factory=WatchStats)  # the hub's, shared by its subscribers
    _waiting: OrderedDict[int, events_pb2.MissionEvent] = field(default_factory=OrderedDict)
    _progress: dict[str, int] = field(default_factory=dict)  # mission id -> sequence of its waiting PROGRESS
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def overflowed(self) -> bool:
        return self.ended is SubscriberLaggingError

    @property
    def waiting(self) -> list[events_pb2.MissionEvent]:
        return list(self._waiting.values())

    def offer(self, event: events_pb2.MissionEvent) -> None:
        if self.ended:
            return
        progress = event.type == events_pb2.EVENT_TYPE_PROGRESS
        # Coalesce only under pressure: a subscriber that keeps up sees every event.
        under_pressure = len(self._waiting) >= self.capacity // 2
        older = self._progress.get(event.mission_id) if progress and under_pressure else None
        if older is not None:
            del self._waiting[older]
            self.coalesced += 1
            self.stats.coalesced += 1
        elif len(self._waiting) >= self.capacity:
            self.end(SubscriberLaggingError)
            return
        if progress:
            self._progress[event.mission_id] = event.sequence
        self._waiting[event.sequence] = event
        self._ready.set()

    def take_nowait(self, position: int) -> events_pb2.MissionEvent | None:
        """The oldest waiting event, or None. Once the stream has ended, raises its
        StreamEndedError with ``position`` at once, without draining what is waiting."""
        if self.ended:
            raise self.ended(position)
        if not self._waiting:
            return None
        _, event = self._waiting.popitem(last=False)
        if self._progress.get(event.mission_id) == event.sequence:
            del self._progress[event.mission_id]
        return event

    async def take(self, position: int) -> events_pb2.MissionEvent:
        """The oldest waiting event, once there is one (see take_nowait)."""
        while (event := self.take_nowait(position)) is None:
            self._ready.clear()
            await self._ready.wait()
        return event

    def end(self, why: type[StreamEndedError]) -> None:
        if self.ended is None:
            if why is SubscriberLaggingError:
                self.stats.lagging += 1
            elif why is ServiceStoppingError:
                self.stats.stopping += 1
        self.ended = why
        self._ready.set()


class Hub:
    """Fans each applied batch out to the live subscribers whose filter admits it.

    Subscribers are indexed by their most selective filter (see EventFilter.index_keys),
    so an event costs work only for the subscribers whose index key it carries, not for
    every subscriber.
    """

    def __init__(self, head: int = 0, buffer: int = DEFAULT_BUFFER) -> None:
        self.head = head
        self._buffer = buffer
        self._subscriptions: set[Subscription] = set()
        self._index: dict[IndexKey, set[Subscription]] = {}
        self._closed = False
        self.stats = WatchStats()

    def __len__(self) -> int:
        return len(self._subscriptions)

    @property
    def index_keys(self) -> int:
        """How many keys the index holds: one per key of a live subscriber's filter, none left behind."""
        return len(self._index)

    def publish(self, batch: Sequence[events_pb2.MissionEvent]) -> None:
        index = self._index
        for event in batch:
            for key in event_keys(event):
                for sub in index.get(key, ()):
                    if sub.filter.admits(event):
                        sub.offer(event)
        if batch:
            self.head = batch[-1].sequence

    def close(self) -> None:
        """End every live stream with ServiceStoppingError (clients resume elsewhere)."""
        self._closed = True
        for sub in self._subscriptions:
            sub.end(ServiceStoppingError)

    @contextlib.contextmanager
    def subscribe(self, event_filter: EventFilter) -> Iterator[Subscription]:
        sub = Subscription(event_filter, self.head, capacity=self._buffer, stats=self.stats)
        if self._closed:
            sub.end(ServiceStoppingError)
        self._subscriptions.add(sub)
        keys = event_filter.index_keys()
        for key in keys:
            self._index.setdefault(key, set()).add(sub)
        try:
            yield sub
        finally:
            self._subscriptions.discard(sub)
            for key in keys:
                bucket = self._index[key]
                bucket.discard(sub)
                if not bucket:
                    del self._index[key]


@dataclass(frozen=True, slots=True)
class Idle:
    """No event for a while: the stream has seen every event up to ``position``."""

    position: int


# Opens a replay of the log: yields events with sequence > the argument, in order; an
# event without an id is a gap (a record no reader sees), which only moves the position.
LogReplay = Callable[[int], AsyncGenerator[events_pb2.MissionEvent, None]]


@overload
def watch(
    hub: Hub,
    replay: LogReplay,
    event_filter: EventFilter,
    start: int | None,
    finished: Collection[str] = (),
    generations: Mapping[str, int] | None = None,
    idle: None = None,
) -> AsyncGenerator[events_pb2.MissionEvent, None]: ...


@overload
def watch(
    hub: Hub,
    replay: LogReplay,
    event_filter: EventFilter,
    start: int | None,
    finished: Collection[str] = (),
    generations: Mapping[str, int] | None = None,
    *,
    idle: float,
) -> AsyncGenerator[events_pb2.MissionEvent | Idle, None]: ...


async def watch(
    hub: Hub,
    replay: LogReplay,
    event_filter: EventFilter,
    start: int | None,
    finished: Collection[str] = (),
    generations: Mapping[str, int] | None = None,
    idle: float | None = None,
) -> AsyncGenerator[events_pb2.MissionEvent | Idle, None]:
    """Events matching ``event_filter`` after sequence ``start`` (None: live only).

    Registers with the hub first, then replays the log up to the hub's head at that
    moment, then continues with the live events buffered meanwhile; sequences already
    delivered are skipped, so the hand-over has neither gap nor duplicate. When the
    filter names missions, the stream ends after each has emitted the final event of its
    current generation (``generations``: the redrive count of each, 0 if absent; a
    REDRIVEN event seen on the way raises it); ``finished`` lists those already final at
    or before ``start``. After ``idle`` seconds without a live event it yields Idle with
    the position up to which the stream has seen everything.
    """
    ends = _Ends(event_filter, finished, generations)
    if ends.done:
        return
    with hub.subscribe(event_filter) as sub:
        position = sub.head if start is None else start
        if position < sub.head:
            async with contextlib.aclosing(replay(position)) as past:
                async for event in past:
                    if event.sequence > sub.head:
                        break
                    position = event.sequence
                    if event.id:
                        ends.see(event)
                        if event_filter.matches(event):
                            yield event
                    if ends.done:
                        return
                    if position == sub.head:
                        break
        while True:
            # Wait (with a timer) only when nothing is buffered: under load a fan-out
            # batch fills the buffer and each event is then taken without a wait.
            live = sub.take_nowait(position)
            if live is None:
                try:
                    live = await asyncio.wait_for(sub.take(position), idle)
                except TimeoutError:
                    # Nothing is waiting, so nothing up to the hub's head matched this filter.
                    position = max(position, hub.head)
                    yield Idle(position)
                    continue
            if live.sequence <= position:
                continue
            position = live.sequence
            ends.see(live)
            if event_filter.matches(live):
                yield live
            if ends.done:
                return


class _Ends:
    """Where a stream that names missions ends: once each has emitted the final event of
    its current generation (a REDRIVEN seen on the way starts a newer one)."""

    def __init__(
        self, event_filter: EventFilter, finished: Collection[str], generations: Mapping[str, int] | None
    ) -> None:
        self._named = bool(event_filter.mission_ids)
        self._pending = set(event_filter.mission_ids) - set(finished)
        self._generations = dict(generations or {})

    @property
    def done(self) -> bool:
        return self._named and not self._pending

    def see(self, event: events_pb2.MissionEvent) -> None:
        generation = self._generations.get(event.mission_id, 0)
        if event.type == events_pb2.EVENT_TYPE_REDRIVEN:
            self._generations[event.mission_id] = max(generation, event.generation)
        elif is_final(event) and event.generation >= generation:
            self._pending.discard(event.mission_id)
