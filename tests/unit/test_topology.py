"""Broker names and routing keys, all derived from the namespace."""

from __future__ import annotations

from datetime import timedelta

import pytest

from missions import topology
from missions.events import duration
from missions.topology import Topology, event_routing_key
from missions.v1 import events_pb2
from tests.unit.factories import EventLog

E = events_pb2


def test_names_derive_from_the_namespace() -> None:
    names = Topology("tenant-a")
    assert names.events_exchange == "tenant-a.events"
    assert names.log_queue == "tenant-a.log"
    assert names.dispatch_exchange == "tenant-a.dispatch"
    assert names.work_queue("billing.invoice") == "tenant-a.work.billing.invoice"
    assert names.legacy_work_queue == "tenant-a.work"
    assert names.dead_letter_queue == "tenant-a.dead"
    assert names.backoff_queue(1500) == "tenant-a.backoff.1500"


def test_default_namespace() -> None:
    assert Topology().work_queue("echo") == "missions.work.echo"


def test_routing_keys_per_event_type() -> None:
    log = EventLog()
    keys = [
        event_routing_key(log.created("m1", "billing.invoice")),
        event_routing_key(log.started("m1")),
        event_routing_key(log.progress("m1", 0.5)),
        event_routing_key(log.completed("m1")),
        event_routing_key(log.failed("m1", will_retry=False)),
        event_routing_key(log.cancelled("m1")),
        event_routing_key(log.dead_lettered("m1")),
    ]
    assert keys == [
        "created.billing.invoice",
        "started.billing.invoice",
        "progress.billing.invoice",
        "completed.billing.invoice",
        "failed.billing.invoice",
        "cancelled.billing.invoice",
        "dead_lettered.billing.invoice",
    ]


def test_routing_key_without_a_mission_type() -> None:
    event = events_pb2.MissionEvent(id="e", mission_id="m", type=E.EVENT_TYPE_CREATED)
    assert event_routing_key(event) == "created._"


@pytest.mark.parametrize(
    ("delay", "key"),
    [
        (timedelta(0), "retrying.0"),
        (timedelta(milliseconds=8), "retrying.8"),
        (timedelta(seconds=1, milliseconds=536), "retrying.1536"),
        (timedelta(minutes=5), "retrying.300000"),
        (timedelta(microseconds=1999), "retrying.1"),
    ],
)
def test_retrying_routes_by_its_delay_in_ms(delay: timedelta, key: str) -> None:
    log = EventLog()
    log.created("m1")
    event = log.retrying("m1")
    event.retrying.delay.CopyFrom(duration(delay))
    assert event_routing_key(event) == key
    # The key is what the delay queue of that delay is bound with.
    assert key == topology.retry_binding(topology.retry_delay_ms(event))


def _matches(binding: str, key: str) -> bool:
    """Topic matching for the bindings used here: an exact key, or a prefix then "#"."""
    return key.startswith(binding.removesuffix("#")) if binding.endswith("#") else key == binding


def test_the_legacy_dead_letter_binding_is_the_one_that_took_dead_lettered_events() -> None:
    log = EventLog()
    assert _matches(topology.LEGACY_DEAD_LETTER_BINDING, event_routing_key(log.dead_lettered("m1")))
    assert not _matches(topology.LEGACY_DEAD_LETTER_BINDING, event_routing_key(log.created("m1", "echo")))


def test_the_legacy_work_bindings_are_every_way_an_event_reached_the_legacy_work_queue() -> None:
    log = EventLog()
    for event in (log.created("m1", "echo"), log.redriven("m1"), log.retrying("m1", delay_ms=0)):
        assert any(_matches(binding, event_routing_key(event)) for binding in topology.LEGACY_WORK_BINDINGS)
    for event in (log.started("m1"), log.retrying("m1", delay_ms=100), log.completed("m1")):
        assert not any(_matches(binding, event_routing_key(event)) for binding in topology.LEGACY_WORK_BINDINGS)
