"""WatchEvents filters and the hub's index: who gets which event, and at what cost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator, Mapping

import pytest

from mission_service.filters import EventFilter
from mission_service.labels import parse_label_selector
from mission_service.limits import Limits
from mission_service.watch import Hub, Idle, Subscription, watch
from missions.errors import InvalidArgumentError
from missions.v1 import events_pb2
from tests.unit.factories import EventLog

E = events_pb2
LABELS = {"m1": {"team": "payments", "env": "prod"}, "m2": {"team": "search"}}


def _labels_of(mission_id: str) -> dict[str, str]:
    return LABELS.get(mission_id, {})


def _events() -> list[events_pb2.MissionEvent]:
    log = EventLog()
    return [log.created("m1", "echo"), log.created("m2", "sleep"), log.started("m1"), log.started("m2")]


@pytest.mark.parametrize(
    ("event_filter", "expected"),
    [
        (EventFilter(), [("m1", 1), ("m2", 1), ("m1", 2), ("m2", 2)]),
        (EventFilter(mission_ids=frozenset({"m2"})), [("m2", 1), ("m2", 2)]),
        (EventFilter(types=frozenset({E.EVENT_TYPE_STARTED})), [("m1", 2), ("m2", 2)]),
        (EventFilter(mission_types=frozenset({"sleep"})), [("m2", 1), ("m2", 2)]),
        (EventFilter(labels=(("team", "payments"),), labels_of=_labels_of), [("m1", 1), ("m1", 2)]),
        (EventFilter(labels=(("env", "prod"), ("team", "search")), labels_of=_labels_of), []),
        (
            EventFilter(mission_types=frozenset({"echo"}), types=frozenset({E.EVENT_TYPE_CREATED})),
            [("m1", 1)],
        ),
    ],
)
def test_filters_combine_with_and(event_filter: EventFilter, expected: list[tuple[str, int]]) -> None:
    matched = [(event.mission_id, event.type) for event in _events() if event_filter.matches(event)]
    assert matched == expected


def test_a_mission_watch_is_offered_every_event_of_its_missions() -> None:
    """Its final events end the stream even when the type filter hides them."""
    event_filter = EventFilter(mission_ids=frozenset({"m1"}), types=frozenset({E.EVENT_TYPE_CREATED}))
    offered = [event.type for event in _events() if event_filter.admits(event)]
    assert offered == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED]


def test_the_hub_offers_each_subscriber_only_what_it_admits() -> None:
    hub = Hub()
    filters = {
        "all": EventFilter(),
        "m2": EventFilter(mission_ids=frozenset({"m2"})),
        "sleep": EventFilter(mission_types=frozenset({"sleep"})),
        "started": EventFilter(types=frozenset({E.EVENT_TYPE_STARTED})),
        "payments": EventFilter(labels=(("team", "payments"),), labels_of=_labels_of),
    }
    with subscribed(hub, filters) as subs:
        hub.publish(_events())
        received = {name: [(e.mission_id, e.type) for e in drain(sub)] for name, sub in subs.items()}
    assert received == {
        "all": [("m1", 1), ("m2", 1), ("m1", 2), ("m2", 2)],
        "m2": [("m2", 1), ("m2", 2)],
        "sleep": [("m2", 1), ("m2", 2)],
        "started": [("m1", 2), ("m2", 2)],
        "payments": [("m1", 1), ("m1", 2)],
    }
    assert len(hub) == 0 and hub.index_keys == 0  # unsubscribing empties the index


def test_subscribers_of_other_missions_cost_no_filter_work() -> None:
    calls = 0

    class Counting(EventFilter):
        def admits(self, event: events_pb2.MissionEvent) -> bool:
            nonlocal calls
            calls += 1
            return super().admits(event)

    hub = Hub()
    filters = {f"w{n}": Counting(mission_ids=frozenset({f"other-{n}"})) for n in range(100)}
    with subscribed(hub, filters):
        hub.publish(_events())
    assert calls == 0


def test_label_selector_parsing() -> None:
    limits = Limits()
    assert parse_label_selector("", limits) == ()
    assert parse_label_selector(" team=payments , env=prod", limits) == (("env", "prod"), ("team", "payments"))
    assert parse_label_selector("empty=", limits) == (("empty", ""),)
    for bad in ("team", "=x", "a=b,,c=d"):
        with pytest.raises(InvalidArgumentError) as caught:
            parse_label_selector(bad, limits)
        assert caught.value.field == "label_selector"
    too_many = ",".join(f"k{n}=v" for n in range(limits.max_label_selector_pairs + 1))
    with pytest.raises(InvalidArgumentError, match="limit is 16"):
        parse_label_selector(too_many, limits)


@contextlib.contextmanager
def subscribed(hub: Hub, filters: Mapping[str, EventFilter]) -> Iterator[dict[str, Subscription]]:
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(hub.subscribe(f)) for name, f in filters.items()}


def drain(sub: Subscription) -> list[events_pb2.MissionEvent]:
    return sub.waiting


async def test_an_idle_stream_gets_heartbeats_that_advance_past_filtered_events() -> None:
    log = EventLog()
    hub = Hub()

    async def no_replay(after: int) -> AsyncGenerator[events_pb2.MissionEvent, None]:
        raise AssertionError("a live-only watch must not replay")
        yield  # pragma: no cover

    only_sleep = EventFilter(mission_types=frozenset({"sleep"}))
    stream = watch(hub, no_replay, only_sleep, start=None, idle=0.01)
    async with contextlib.aclosing(stream) as items:
        first = await asyncio.wait_for(anext(items), 5)
        assert first == Idle(0)
        hub.publish([log.created("m1", "echo"), log.started("m1")])  # nothing for this filter
        second = await asyncio.wait_for(anext(items), 5)
        assert second == Idle(2)  # seen everything up to 2, though nothing was delivered
        wanted = log.created("m2", "sleep")
        hub.publish([wanted])
        third = await asyncio.wait_for(anext(items), 5)
        assert isinstance(third, events_pb2.MissionEvent) and third.id == wanted.id
