"""Metrics: bounded type labels, cached children, scrape-time values, the HTTP endpoint, and
what the service and the worker count."""

from __future__ import annotations

import argparse
import asyncio
import urllib.error
import urllib.request
from datetime import timedelta
from typing import cast

import pytest
from aio_pika.abc import AbstractRobustConnection
from aio_pika.tools import CallbackCollection
from prometheus_client import CollectorRegistry, Counter

from mission_service.follower import LogFollower, ReadLog
from mission_service.metrics import ServiceMetrics
from mission_service.store import MissionStore
from mission_service.watch import EventFilter, Hub
from missions.metrics import (
    OTHER_TYPE,
    BrokerReconnects,
    ByType,
    MissionTypes,
    PublishedEvents,
    process_registry,
    register_sampled_counter,
)
from missions.metrics_http import serving, split_listen
from missions.options import METRICS_LISTEN, add_options
from missions.outcomes import Outcome
from missions.startup import StartupError
from missions.v1 import events_pb2, mission_pb2
from tests.unit.factories import EventLog, struct, time_of
from worker_service.metrics import WorkerMetrics

E = events_pb2
M = mission_pb2


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def events() -> EventLog:
    return EventLog()


# --- shared machinery ---


def test_mission_types_past_the_limit_are_folded_into_other() -> None:
    types = MissionTypes(limit=2)
    assert [types.label(name) for name in ("a", "b", "c", "a", "d", "b")] == [
        "a",
        "b",
        OTHER_TYPE,
        "a",
        OTHER_TYPE,
        "b",
    ]


def test_an_empty_mission_type_is_other_rather_than_no_label() -> None:
    assert MissionTypes().label("") == OTHER_TYPE


def test_children_are_made_once_per_type_and_folded_types_share_one() -> None:
    registry = CollectorRegistry()
    family = Counter("things", "things", ["type"], registry=registry)
    children = ByType(family, MissionTypes(limit=1))
    assert children["echo"] is children["echo"]
    children["echo"].inc()
    children["x1"].inc()
    children["x2"].inc(2)
    assert _value(registry, "things_total", type="echo") == 1
    assert _value(registry, "things_total", type=OTHER_TYPE) == 3
    assert _value(registry, "things_total", type="x1") == 0


def test_fixed_labels_follow_the_type() -> None:
    registry = CollectorRegistry()
    family = Counter("things", "things", ["type", "outcome"], registry=registry)
    ByType(family, MissionTypes(), "failed")["echo"].inc()
    assert _value(registry, "things_total", type="echo", outcome="failed") == 1


def test_published_events_are_counted_by_event_type() -> None:
    registry = CollectorRegistry()
    published = PublishedEvents(registry)
    published.count(E.MissionEvent(type=E.EVENT_TYPE_CREATED))
    published.count(E.MissionEvent(type=E.EVENT_TYPE_CREATED))
    published.count(E.MissionEvent(type=E.EVENT_TYPE_DEAD_LETTERED))
    assert _value(registry, "missions_events_published_total", event_type="created") == 2
    assert _value(registry, "missions_events_published_total", event_type="dead_lettered") == 1
    assert _value(registry, "missions_events_published_total", event_type="progress") == 0


def test_a_sampled_counter_is_read_when_scraped() -> None:
    registry = CollectorRegistry()
    counts = {"a": 1}
    register_sampled_counter(registry, "seen", "seen", {("a",): lambda: counts["a"]}, labels=("kind",))
    assert _value(registry, "seen_total", kind="a") == 1
    counts["a"] = 5
    assert _value(registry, "seen_total", kind="a") == 5


class _Connection:
    """The part of a robust connection that announces reconnects."""

    def __init__(self) -> None:
        self.reconnect_callbacks: CallbackCollection[_Connection, []] = CallbackCollection(self)


async def test_reconnects_are_counted_per_connection() -> None:
    connection = _Connection()
    registry = CollectorRegistry()
    BrokerReconnects(registry).track(cast(AbstractRobustConnection, connection), "log")
    assert registry.get_sample_value("missions_broker_reconnects_total", {"connection": "log"}) == 0
    await connection.reconnect_callbacks()
    await connection.reconnect_callbacks()
    assert _value(registry, "missions_broker_reconnects_total", connection="log") == 2


@pytest.mark.parametrize(
    ("listen", "parsed"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)), (":9464", ("", 9464))],
)
def test_listen_addresses_split_into_host_and_port(listen: str, parsed: tuple[str, int]) -> None:
    assert split_listen(listen) == parsed


@pytest.mark.parametrize("listen", ["9464", "host:", "host:port", "host:70000"])
def test_a_bad_listen_address_is_a_usage_error_naming_the_flag(listen: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, [METRICS_LISTEN])
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--metrics-listen", listen])
    assert exited.value.code == 2
    assert "--metrics-listen" in capsys.readouterr().err


def test_metrics_are_off_by_default() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, [METRICS_LISTEN])
    assert parser.parse_args([]).metrics_listen == ""


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_the_endpoint_serves_the_registry_until_closed() -> None:
    registry = CollectorRegistry()
    Counter("served", "served", registry=registry).inc(3)
    async with serving("127.0.0.1:0", registry) as port:
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert "served_total 3.0" in text
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")


async def test_a_taken_port_is_a_one_line_start_up_error_naming_the_flag() -> None:
    async with serving("127.0.0.1:0", CollectorRegistry()) as port:
        with pytest.raises(StartupError, match=r"address already in use \(--metrics-listen\)$"):
            async with serving(f"127.0.0.1:{port}", CollectorRegistry()):
                pass


def test_a_process_registry_has_the_standard_process_metrics() -> None:
    names = {metric.name for metric in process_registry().collect()}
    assert {"process_cpu_seconds", "python_gc_collections", "python_info"} <= names


# --- the service ---


def _service(store: MissionStore | None = None) -> tuple[ServiceMetrics, CollectorRegistry]:
    metrics = ServiceMetrics((store or MissionStore(":memory:")).get)
    return metrics, metrics.registry


def test_the_service_counts_the_log_by_event_and_mission_type(events: EventLog) -> None:
    metrics, registry = _service()
    metrics.count_applied(
        [
            events.created("m1", "report"),
            events.started("m1"),
            events.progress("m1", 0.5),
            events.failed("m1", will_retry=True),
            events.retrying("m1"),
            events.started("m1", attempt=2),
            events.completed("m1"),
            events.created("m2", "echo"),
            events.cancelled("m2"),
        ]
    )
    expected = {
        "missions_submitted_total": 1,
        "missions_started_total": 2,
        "missions_failed_total": 1,
        "missions_retried_total": 1,
        "missions_succeeded_total": 1,
        "missions_dead_lettered_total": 0,
    }
    assert {name: _value(registry, name, type="report") for name in expected} == expected
    assert _value(registry, "missions_cancelled_total", type="echo") == 1
    assert _value(registry, "missions_submitted_total", type="echo") == 1


def test_end_to_end_latency_runs_from_submission_to_the_final_event(events: EventLog) -> None:
    metrics, registry = _service()
    # Event times are 1 s apart: created at 1, dead-lettered at 4; created at 5, cancelled at 6.
    metrics.count_applied(
        [
            events.created("m1"),
            events.started("m1"),
            events.failed("m1", will_retry=False),
            events.dead_lettered("m1"),
            events.created("m2"),
            events.cancelled("m2"),
        ]
    )
    assert _value(registry, "missions_end_to_end_seconds_count", type="echo") == 2
    assert _value(registry, "missions_end_to_end_seconds_sum", type="echo") == 3 + 1
    assert _value(registry, "missions_end_to_end_seconds_bucket", type="echo", le="1.0") == 1


def test_a_final_event_after_a_restart_reads_the_submission_time_from_the_store(events: EventLog) -> None:
    store = MissionStore(":memory:")
    before = [events.created("m1"), events.started("m1")]
    store.apply_batch(before)  # applied by the previous process
    metrics, registry = _service(store)
    metrics.count_applied([events.completed("m1"), events.completed("unknown")])
    assert _value(registry, "missions_end_to_end_seconds_count", type="echo") == 1
    assert _value(registry, "missions_end_to_end_seconds_sum", type="echo") == 2


def test_watch_subscribers_drops_and_coalescing_are_read_from_the_hub(events: EventLog) -> None:
    metrics, registry = _service()
    hub = Hub(buffer=2)
    metrics.sample(hub, LogFollower(cast(ReadLog, None), MissionStore(":memory:"), hub.publish))
    everything = EventFilter()
    with hub.subscribe(everything), hub.subscribe(everything):
        assert _value(registry, "missions_watch_subscribers") == 2
        hub.publish([events.created("m1"), events.progress("m1", 0.1), events.progress("m1", 0.2)])
        assert _value(registry, "missions_watch_progress_coalesced_total") == 2
        hub.publish([events.created("m2")])  # both buffers are full: both streams are cut off
        assert _value(registry, "missions_watch_dropped_total", reason="lagging") == 2
        hub.close()  # ended streams are not counted again
        assert _value(registry, "missions_watch_dropped_total", reason="stopping") == 0
    with hub.subscribe(everything):
        assert _value(registry, "missions_watch_dropped_total", reason="stopping") == 1
    assert _value(registry, "missions_watch_subscribers") == 0


def test_the_log_position_counts_and_skipped_records_are_read_from_the_follower(events: EventLog) -> None:
    metrics, registry = _service()
    hub = Hub()
    follower = LogFollower(cast(ReadLog, None), MissionStore(":memory:"), hub.publish)
    metrics.sample(hub, follower)
    follower.position = 42_001
    follower.tally.skipped, follower.tally.events, follower.tally.records = 3, 12, 5
    assert _value(registry, "missions_log_position") == 42_001
    assert _value(registry, "missions_undecodable_messages_total", queue="log") == 3
    assert _value(registry, "missions_log_events_read_total") == 12
    assert _value(registry, "missions_log_records_read_total") == 5


# --- the worker ---


def test_attempt_durations_are_observed_by_type_and_outcome() -> None:
    metrics = WorkerMetrics()
    error = M.MissionError
    for finished in (
        Outcome(timedelta(seconds=2), result=struct()),
        Outcome(timedelta(seconds=1), error=error(type="ValueError")),
        Outcome(timedelta(seconds=30), error=error(type="DeadlineExceeded")),
        Outcome(timedelta(seconds=3), error=error(type="Interrupted")),
    ):
        metrics.attempt_finished("echo", finished)
    for outcome, seconds in (("succeeded", 2), ("failed", 1), ("timed_out", 30), ("interrupted", 3)):
        name = "missions_attempt_duration_seconds"
        assert _value(metrics.registry, f"{name}_count", type="echo", outcome=outcome) == 1
        assert _value(metrics.registry, f"{name}_sum", type="echo", outcome=outcome) == seconds


def test_queue_wait_runs_from_when_the_attempt_was_ready(events: EventLog) -> None:
    metrics = WorkerMetrics()
    created = events.created("m1")  # at 1
    started = events.started("m1")  # at 2
    retrying = events.retrying("m1")  # at 3, ready at 10
    retrying.retrying.next_attempt_time.CopyFrom(time_of(10))
    again = events.started("m1", attempt=2)  # at 4: before it was due (two clocks)
    metrics.attempt_started(created, started)
    metrics.attempt_started(retrying, again)
    assert _value(metrics.registry, "missions_queue_wait_seconds_count", type="echo") == 2
    assert _value(metrics.registry, "missions_queue_wait_seconds_sum", type="echo") == 1


def test_worker_gauges_are_read_when_scraped() -> None:
    metrics = WorkerMetrics()
    state = {"running": 2, "look-ahead": 3, "retrying": 1, "undecodable": 4, "awaiting": 5}
    metrics.sample(
        lambda: state["running"],
        lambda: state["look-ahead"],
        lambda: state["retrying"],
        lambda: state["undecodable"],
        lambda: state["awaiting"],
    )
    assert _value(metrics.registry, "missions_worker_awaiting_word") == 5
    assert _value(metrics.registry, "missions_worker_running") == 2
    assert _value(metrics.registry, "missions_worker_waiting") == 3
    assert _value(metrics.registry, "missions_outbox_depth") == 1
    assert _value(metrics.registry, "missions_undecodable_messages_total", queue="work") == 4
    state["running"] = 0
    assert _value(metrics.registry, "missions_worker_running") == 0


def test_processes_have_registries_of_their_own() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()
    first.published.count(E.MissionEvent(type=E.EVENT_TYPE_STARTED))
    assert _value(second.registry, "missions_events_published_total", event_type="started") == 0
