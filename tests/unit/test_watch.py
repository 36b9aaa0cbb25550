"""watch() and the Hub: replay then live, with neither gap nor duplicate at the hand-over."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Collection, Iterable, Iterator

import pytest

from mission_service.watch import EventFilter, Hub, Subscription, watch
from missions.errors import ServiceStoppingError, StreamEndedError, SubscriberLaggingError
from missions.v1 import events_pb2
from tests.unit.factories import EventLog

E = events_pb2
TIMEOUT = 5.0

Stream = AsyncGenerator[events_pb2.MissionEvent, None]


class FakeLog:
    """The broker's log as a replay sees it: every event published so far, in order.

    Like read_log, a replay never ends by itself: past the last event it waits for the
    next one. And like the real log it can be ahead of the hub: events appended here
    reach a replay that is already running.
    """

    def __init__(self, events: Iterable[events_pb2.MissionEvent] = ()) -> None:
        self.events = list(events)
        self.replays: list[int] = []
        self.closed = 0
        self.all_closed = asyncio.Event()
        self._grown = asyncio.Event()

    def append(self, events: Iterable[events_pb2.MissionEvent]) -> None:
        self.events.extend(events)
        self._grown.set()

    async def replay(self, after: int) -> AsyncGenerator[events_pb2.MissionEvent, None]:
        self.replays.append(after)
        self.all_closed.clear()
        index = 0
        try:
            while True:
                while index < len(self.events):
                    event = self.events[index]
                    index += 1
                    if event.sequence > after:
                        yield event
                self._grown.clear()
                await self._grown.wait()
        finally:
            self.closed += 1
            if self.closed == len(self.replays):
                self.all_closed.set()


class ObservedHub(Hub):
    """A real Hub that tells the test when a subscriber has registered."""

    def __init__(self, head: int = 0, buffer: int = 10_000) -> None:
        super().__init__(head, buffer)
        self.subscribed = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, event_filter: EventFilter) -> Iterator[Subscription]:
        with super().subscribe(event_filter) as sub:
            self.subscribed.set()
            yield sub


def _follow(log: FakeLog, hub: Hub, events: list[events_pb2.MissionEvent]) -> None:
    """What the follower does with a batch: it is in the log, then applied and fanned out."""
    log.append(event for event in events if event not in log.events)
    hub.publish(events)


async def _next(stream: Stream) -> events_pb2.MissionEvent:
    return await asyncio.wait_for(anext(stream), TIMEOUT)


async def _rest(stream: Stream) -> list[events_pb2.MissionEvent]:
    """Every remaining event; fails if the stream does not end by itself."""

    async def drain() -> list[events_pb2.MissionEvent]:
        return [event async for event in stream]

    return await asyncio.wait_for(drain(), TIMEOUT)


def _seqs(events: Iterable[events_pb2.MissionEvent]) -> list[int]:
    return [event.sequence for event in events]


def _watch(
    hub: Hub,
    log: FakeLog,
    start: int | None,
    mission_ids: Collection[str] = (),
    types: Collection[int] = (),
    finished: Collection[str] = (),
) -> Stream:
    return watch(hub, log.replay, EventFilter(frozenset(mission_ids), frozenset(types)), start, finished)


@pytest.fixture
def events() -> EventLog:
    return EventLog()


async def test_replay_then_live_without_gap_or_duplicate(events: EventLog) -> None:
    history = [events.created("m1"), events.started("m1"), events.progress("m1", 0.2)]
    log = FakeLog(history)
    hub = Hub(head=3)
    stream = _watch(hub, log, start=0)
    delivered = [await _next(stream)]
    assert len(hub) == 1  # registered before the replay started
    # While the replay runs, the follower applies two more events: they reach both the
    # (still running) replay and the subscriber's live buffer.
    _follow(log, hub, [events.progress("m1", 0.5), events.progress("m1", 0.8)])
    for _ in range(4):
        delivered.append(await _next(stream))
    _follow(log, hub, [events.completed("m1")])
    delivered.append(await _next(stream))
    assert _seqs(delivered) == [1, 2, 3, 4, 5, 6]
    assert log.replays == [0]
    await stream.aclose()
    assert len(hub) == 0
    assert log.closed == 1


async def test_the_replay_is_closed_once_it_reaches_the_head(events: EventLog) -> None:
    # A replay left open would hold a broker consumer and wait for the log to grow.
    log = FakeLog([events.created("m1"), events.started("m1")])
    hub = Hub(head=2)
    stream = _watch(hub, log, start=0)
    assert _seqs([await _next(stream), await _next(stream)]) == [1, 2]
    pending = asyncio.ensure_future(_next(stream))
    await asyncio.wait_for(log.all_closed.wait(), TIMEOUT)
    _follow(log, hub, [events.progress("m1", 0.5)])
    assert (await pending).sequence == 3
    await stream.aclose()


async def test_replay_stops_at_the_head_even_when_the_log_is_ahead(events: EventLog) -> None:
    log = FakeLog([events.created("m1"), events.started("m1"), events.progress("m1", 0.5)])
    hub = Hub(head=2)  # the follower has applied 1..2 only
    stream = _watch(hub, log, start=0)
    assert _seqs([await _next(stream), await _next(stream)]) == [1, 2]
    hub.publish([log.events[2]])  # now the follower applies 3
    assert _seqs([await _next(stream)]) == [3]
    await stream.aclose()


async def test_a_gap_at_the_head_ends_the_replay_and_is_never_delivered(events: EventLog) -> None:
    # The last record the follower applied is one no reader sees (a duplicate): the replay
    # yields it as a gap, and the stream must not wait for the log to grow past it.
    created, duplicate = events.created("m1"), events.created("m1")
    log = FakeLog([created, events_pb2.MissionEvent(sequence=duplicate.sequence)])
    hub = Hub(head=duplicate.sequence)
    stream = _watch(hub, log, start=0)
    assert _seqs([await _next(stream)]) == [1]
    pending = asyncio.ensure_future(_next(stream))
    await asyncio.wait_for(log.all_closed.wait(), TIMEOUT)  # the replay ended at the head
    _follow(log, hub, [events.started("m1")])
    assert (await pending).sequence == 3
    await stream.aclose()


async def test_after_sequence_resumes_after_that_event(events: EventLog) -> None:
    log = FakeLog([events.created("m1"), events.started("m1"), events.progress("m1", 0.5), events.completed("m1")])
    hub = Hub(head=4)
    stream = _watch(hub, log, start=2)
    assert _seqs([await _next(stream), await _next(stream)]) == [3, 4]
    assert log.replays == [2]
    await stream.aclose()


async def test_a_start_ahead_of_the_hub_skips_what_was_already_delivered(events: EventLog) -> None:
    # A client resuming from a replica that was further ahead than this one.
    log = FakeLog([events.created("m1"), events.started("m1"), events.progress("m1", 0.1)])
    hub = ObservedHub(head=1)
    stream = _watch(hub, log, start=3)
    pending = asyncio.ensure_future(_next(stream))
    await asyncio.wait_for(hub.subscribed.wait(), TIMEOUT)
    hub.publish(log.events[1:3])
    _follow(log, hub, [events.progress("m1", 0.4)])
    assert (await pending).sequence == 4
    assert log.replays == []
    await stream.aclose()


async def test_live_only_when_start_is_none(events: EventLog) -> None:
    log = FakeLog([events.created("m1"), events.started("m1")])
    hub = ObservedHub(head=2)
    stream = _watch(hub, log, start=None)
    pending = asyncio.ensure_future(_next(stream))
    await asyncio.wait_for(hub.subscribed.wait(), TIMEOUT)
    _follow(log, hub, [events.progress("m1", 0.3)])
    assert (await pending).sequence == 3
    assert log.replays == []
    await stream.aclose()


async def test_type_filter_still_ends_on_an_unwanted_final_event(events: EventLog) -> None:
    log = FakeLog(
        [
            events.created("m1"),
            events.created("m2"),
            events.started("m1"),
            events.progress("m1", 0.5),
            events.progress("m2", 0.5),
        ]
    )
    hub = Hub(head=5)
    wanted = {E.EVENT_TYPE_PROGRESS, E.EVENT_TYPE_FAILED}
    stream = _watch(hub, log, start=0, mission_ids={"m1"}, types=wanted)
    first = await _next(stream)
    assert (first.mission_id, first.sequence) == ("m1", 4)
    _follow(log, hub, [events.progress("m2", 0.9), events.completed("m1"), events.progress("m1", 1.0)])
    # COMPLETED is filtered out but still ends the stream: nothing after it is delivered.
    assert await _rest(stream) == []
    assert len(hub) == 0


async def test_stream_ends_after_every_watched_mission_has_finished(events: EventLog) -> None:
    log = FakeLog(
        [
            events.created("m1"),
            events.created("m2"),
            events.created("m3"),
            events.started("m1"),
            events.completed("m1", ok=True),
            events.started("m2"),
        ]
    )
    hub = Hub(head=6)
    stream = _watch(hub, log, start=0, mission_ids={"m1", "m2"})
    delivered = [await _next(stream) for _ in range(5)]
    assert _seqs(delivered) == [1, 2, 4, 5, 6]
    _follow(
        log,
        hub,
        [events.failed("m2", will_retry=False), events.progress("m3", 0.5), events.dead_lettered("m2")],
    )
    rest = await _rest(stream)
    assert _seqs(rest) == [7, 9]
    assert [event.type for event in rest] == [E.EVENT_TYPE_FAILED, E.EVENT_TYPE_DEAD_LETTERED]
    assert len(hub) == 0


async def test_stream_ends_inside_the_replay_when_history_holds_every_final_event(events: EventLog) -> None:
    log = FakeLog([events.created("m1"), events.completed("m1"), events.created("m2"), events.started("m2")])
    hub = Hub(head=4)
    stream = _watch(hub, log, start=0, mission_ids={"m1"})
    assert _seqs(await _rest(stream)) == [1, 2]
    assert log.closed == 1
    assert len(hub) == 0


async def test_finished_missions_end_the_stream_at_once(events: EventLog) -> None:
    log = FakeLog([events.created("m1"), events.completed("m1")])
    hub = ObservedHub(head=2)
    stream = _watch(hub, log, start=2, mission_ids={"m1"}, finished=["m1"])
    assert await _rest(stream) == []
    assert not hub.subscribed.is_set()
    assert log.replays == []


async def test_finished_missions_are_not_waited_for(events: EventLog) -> None:
    log = FakeLog([events.created("m1"), events.completed("m1"), events.created("m2")])
    hub = Hub(head=3)
    stream = _watch(hub, log, start=2, mission_ids={"m1", "m2"}, finished=["m1"])
    assert _seqs([await _next(stream)]) == [3]
    _follow(log, hub, [events.cancelled("m2")])
    assert _seqs(await _rest(stream)) == [4]


async def test_overflow_raises_with_the_last_delivered_sequence(events: EventLog) -> None:
    log = FakeLog([events.created("m1")])
    hub = Hub(head=1, buffer=2)
    stream = _watch(hub, log, start=0)
    assert (await _next(stream)).sequence == 1
    _follow(log, hub, [events.started("m1"), events.progress("m1", 0.1), events.completed("m1")])
    with pytest.raises(SubscriberLaggingError) as raised:
        await _next(stream)
    assert raised.value.last_sequence == 1
    assert "after_sequence=1" in str(raised.value)
    assert len(hub) == 0


async def test_overflow_after_live_events_reports_the_last_live_one(events: EventLog) -> None:
    log = FakeLog([events.created("m1")])
    hub = Hub(head=1, buffer=2)
    stream = _watch(hub, log, start=0)
    await _next(stream)
    _follow(log, hub, [events.started("m1")])
    assert (await _next(stream)).sequence == 2
    _follow(log, hub, [events.progress("m1", 0.1), events.created("m2"), events.created("m3")])
    with pytest.raises(SubscriberLaggingError) as raised:
        await _next(stream)
    assert raised.value.last_sequence == 2


async def test_a_buffer_at_capacity_is_not_an_overflow(events: EventLog) -> None:
    log = FakeLog([events.created("m1")])
    hub = Hub(head=1, buffer=2)
    stream = _watch(hub, log, start=0)
    await _next(stream)
    _follow(log, hub, [events.started("m1"), events.progress("m1", 0.1)])
    assert _seqs([await _next(stream), await _next(stream)]) == [2, 3]
    await stream.aclose()


async def test_waiting_progress_of_a_mission_is_coalesced_at_the_newer_position(events: EventLog) -> None:
    log = FakeLog([events.created("m1")])
    hub = Hub(head=1, buffer=4)
    stream = _watch(hub, log, start=0)
    await _next(stream)
    batch = [
        events.started("m1"),
        events.progress("m1", 0.1),
        events.created("m2"),
        events.progress("m1", 0.2),
        events.progress("m2", 0.5),
        events.progress("m1", 0.3),
    ]
    _follow(log, hub, batch)  # six events into a buffer of four, without an overflow
    delivered = [await _next(stream) for _ in range(4)]
    assert [(event.sequence, event.type) for event in delivered] == [
        (2, events_pb2.EVENT_TYPE_STARTED),
        (4, events_pb2.EVENT_TYPE_CREATED),
        (6, events_pb2.EVENT_TYPE_PROGRESS),
        (7, events_pb2.EVENT_TYPE_PROGRESS),
    ]
    assert delivered[-1].progress.fraction == pytest.approx(0.3)
    await stream.aclose()


async def test_progress_is_not_coalesced_while_the_subscriber_keeps_up(events: EventLog) -> None:
    hub = Hub(head=0, buffer=4)
    with hub.subscribe(EventFilter()) as sub:
        hub.publish([events.progress("m1", 0.1), events.progress("m1", 0.2)])
        assert [event.progress.fraction for event in sub.waiting] == pytest.approx([0.1, 0.2])
        assert sub.coalesced == 0


async def test_other_event_types_are_never_coalesced(events: EventLog) -> None:
    hub = Hub(head=0, buffer=2)
    with hub.subscribe(EventFilter()) as sub:
        hub.publish([events.created("m1"), events.progress("m1", 0.5), events.started("m1")])
        assert sub.overflowed
        assert sub.coalesced == 0


async def test_hub_buffers_only_the_missions_a_subscriber_wants(events: EventLog) -> None:
    hub = Hub(head=0, buffer=1)
    batch = [events.created("other"), events.started("other"), events.created("mine"), events.created("again")]
    with hub.subscribe(EventFilter(mission_ids=frozenset({"mine"}))) as sub:
        hub.publish(batch)
        assert not sub.overflowed
        assert [event.mission_id for event in sub.waiting] == ["mine"]
    assert hub.head == 4
    assert len(hub) == 0


async def test_hub_head_ignores_empty_batches() -> None:
    hub = Hub(head=7)
    hub.publish([])
    assert hub.head == 7


def test_event_filter(events: EventLog) -> None:
    created, completed = events.created("m1"), events.completed("m1")
    other = events.created("m2")
    assert EventFilter().matches(created)
    by_mission = EventFilter(mission_ids=frozenset({"m1"}))
    assert by_mission.matches(completed)
    assert not by_mission.matches(other)
    by_type = EventFilter(types=frozenset({E.EVENT_TYPE_COMPLETED}))
    assert by_type.matches(completed)
    assert not by_type.matches(created)
    assert by_type.wants_mission(created)


async def test_closing_the_hub_ends_live_streams_with_their_position(events: EventLog) -> None:
    log = FakeLog([events.created("m1"), events.started("m1")])
    hub = Hub(head=2)
    stream = _watch(hub, log, start=0, types={E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED})
    assert _seqs([await _next(stream), await _next(stream)]) == [1, 2]
    pending = asyncio.ensure_future(_next(stream))
    await asyncio.wait_for(log.all_closed.wait(), TIMEOUT)
    hub.close()
    with pytest.raises(ServiceStoppingError) as raised:
        await pending
    assert raised.value.last_sequence == 2
    assert isinstance(raised.value, StreamEndedError)
    assert "after_sequence=2" in str(raised.value)
    assert len(hub) == 0


async def test_closing_the_hub_during_a_replay_ends_the_stream_after_it(events: EventLog) -> None:
    log = FakeLog([events.created("m1"), events.started("m1"), events.progress("m1", 0.5)])
    hub = Hub(head=3)
    stream = _watch(hub, log, start=0)
    assert (await _next(stream)).sequence == 1
    hub.close()
    # The replay already under way still delivers up to the head; then the stream ends.
    assert _seqs([await _next(stream), await _next(stream)]) == [2, 3]
    with pytest.raises(ServiceStoppingError) as raised:
        await _next(stream)
    assert raised.value.last_sequence == 3


async def test_a_watch_that_starts_after_the_hub_closed_ends_at_once(events: EventLog) -> None:
    log = FakeLog([events.created("m1")])
    hub = Hub(head=1)
    hub.close()
    stream = _watch(hub, log, start=None)
    with pytest.raises(ServiceStoppingError):
        await asyncio.wait_for(anext(stream), 1.0)
