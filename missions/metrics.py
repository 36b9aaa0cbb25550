"""Prometheus metrics machinery both processes share: bounded mission-type labels, values
sampled at scrape time, published events and broker reconnects (missions/metrics_http.py
serves them).

Each process builds its own CollectorRegistry (never the global default), so tests can
run several processes' metrics side by side. docs/metrics.md lists every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from aio_pika.abc import AbstractRobustConnection
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from missions.v1 import events_pb2

__all__ = [
    "DURATION_BUCKETS",
    "MAX_MISSION_TYPES",
    "OTHER_TYPE",
    "BrokerReconnects",
    "ByType",
    "MissionTypes",
    "PublishedEvents",
    "process_registry",
    "register_sampled_counter",
    "register_undecodable",
]

log = logging.getLogger(__name__)

# Seconds, for attempt durations, queue waits and end-to-end latency: missions run from
# milliseconds (echo) to the hour, so the buckets span both.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

# Distinct mission types a process labels by name; the rest share OTHER_TYPE. Mission
# types are user input, and every type is a time series per labelled metric.
MAX_MISSION_TYPES = 1000
# Not a valid mission type (those start with a letter), so it never hides a real one.
OTHER_TYPE = "_other"

M = TypeVar("M", bound=MetricWrapperBase)


def process_registry() -> CollectorRegistry:
    """A registry of one process's metrics, with the standard process_* and python_* ones
    (CPU, memory, open files, GC) that every Prometheus client exports by default."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


class MissionTypes:
    """The mission-type label values of one process: the first ``limit`` types keep their
    name, later ones are folded into OTHER_TYPE (one warning when that starts)."""

    def __init__(self, limit: int = MAX_MISSION_TYPES) -> None:
        self._limit = limit
        self._known: set[str] = set()
        self._folding = False

    def label(self, mission_type: str) -> str:
        if mission_type in self._known:
            return mission_type
        if not mission_type or len(self._known) >= self._limit:  # "" would drop the label altogether
            if mission_type and not self._folding:
                self._folding = True
                log.warning("more than %d mission types: metrics count the rest as %r", self._limit, OTHER_TYPE)
            return OTHER_TYPE
        self._known.add(mission_type)
        return mission_type


class ByType(Generic[M]):
    """The children of a metric labelled by mission type (then ``fixed`` values), each made
    once: on the hot path a lookup costs one dict access."""

    def __init__(self, family: M, types: MissionTypes, *fixed: str) -> None:
        self._family = family
        self._types = types
        self._fixed = fixed
        self._children: dict[str, M] = {}

    def __getitem__(self, mission_type: str) -> M:
        child = self._children.get(mission_type)
        if child is None:
            label = self._types.label(mission_type)
            child = self._family.labels(label, *self._fixed)
            if label == mission_type:  # folded types stay out of the cache: it stays bounded
                self._children[mission_type] = child
        return child


class _SampledCounter:
    """A counter a component already keeps as a plain int: read when scraped, so counting
    costs the component nothing more."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...],
        series: Mapping[tuple[str, ...], Callable[[], int]],
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = labels
        self._series = series

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=self._labels)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for values, read in self._series.items():
            family.add_metric(values, read())
        return [family]


def register_sampled_counter(
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    series: Mapping[tuple[str, ...], Callable[[], int]],
    labels: tuple[str, ...] = (),
) -> None:
    """Expose ints that only grow as the counter ``name``: one series per label values."""
    registry.register(_SampledCounter(name, documentation, labels, series))


def register_undecodable(registry: CollectorRegistry, queue: str, read: Callable[[], int]) -> None:
    """``missions_undecodable_messages_total{queue}``: messages skipped or dead-lettered unread."""
    register_sampled_counter(
        registry,
        "missions_undecodable_messages_total",
        "Messages that did not decode as events of our schema: work messages dead-lettered"
        " (queue=work, worker) or log records skipped (queue=log, service).",
        {(queue,): read},
        labels=("queue",),
    )


class PublishedEvents:
    """``missions_events_published_total{event_type}``: events this process had confirmed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        family = Counter(
            "missions_events_published_total",
            "Events this process published and the broker confirmed, by event type.",
            ["event_type"],
            registry=registry,
        )
        self._children = {
            value: family.labels(name.removeprefix("EVENT_TYPE_").lower())
            for name, value in events_pb2.EventType.items()
        }

    def count(self, event: events_pb2.MissionEvent) -> None:
        self._children[event.type].inc()


class BrokerReconnects:
    """``missions_broker_reconnects_total{connection}``: recoveries of robust connections."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._family = Counter(
            "missions_broker_reconnects_total",
            "Times a broker connection was lost and re-established, by connection.",
            ["connection"],
            registry=registry,
        )

    def track(self, connection: AbstractRobustConnection, name: str) -> None:
        child = self._family.labels(name)
        child.inc(0)  # the series exists from the start, so rate() sees the first reconnect

        def reconnected(*_: Any) -> None:
            child.inc()

        connection.reconnect_callbacks.add(reconnected)
