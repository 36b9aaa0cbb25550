"""The worker's Prometheus metrics: its own attempts (durations, queue waits), what it runs
and what waits in its retrying publisher.

Mission counts (submitted, started, succeeded, ...) are the service's, from the log, so
a dashboard summing every process counts each mission once (docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import timestamp_pb2
from prometheus_client import Gauge, Histogram

from missions.metrics import (
    DURATION_BUCKETS,
    BrokerReconnects,
    ByType,
    MissionTypes,
    PublishedEvents,
    process_registry,
    register_undecodable,
)
from missions.outcomes import Outcome
from missions.v1 import events_pb2

__all__ = ["ATTEMPT_OUTCOMES", "WorkerMetrics", "attempt_outcome"]

# The ``outcome`` label of missions_attempt_duration_seconds.
ATTEMPT_OUTCOMES = ("succeeded", "failed", "timed_out", "interrupted")
# Error types the runner gives attempts it stopped itself (worker_service.runner).
_STOPPED = {"DeadlineExceeded": "timed_out", "Interrupted": "interrupted"}


def attempt_outcome(outcome: Outcome) -> str:
    """The ``outcome`` label of a finished attempt."""
    if outcome.error is None:
        return "succeeded"
    return _STOPPED.get(outcome.error.type, "failed")


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


class WorkerMetrics:
    """Every metric of one mission-worker, in its own registry."""

    def __init__(self) -> None:
        self.registry = process_registry()
        types = MissionTypes()
        self.published = PublishedEvents(self.registry)
        self.reconnects = BrokerReconnects(self.registry)
        duration = Histogram(
            "missions_attempt_duration_seconds",
            "How long this worker's attempts ran (the handler, under its timeout), by mission type and outcome.",
            ["type", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._durations = {outcome: ByType(duration, types, outcome) for outcome in ATTEMPT_OUTCOMES}
        self._queue_wait = ByType(
            Histogram(
                "missions_queue_wait_seconds",
                "From a mission being ready to run (submitted, its backoff over, redriven)"
                " to this worker starting it, by mission type.",
                ["type"],
                buckets=DURATION_BUCKETS,
                registry=self.registry,
            ),
            types,
        )

    def attempt_started(self, work: events_pb2.MissionEvent, started: events_pb2.MissionEvent) -> None:
        """The attempt ``work`` asked for began with ``started``: its wait since it was ready to run.

        A retry is ready when its backoff is over, not when it was scheduled. The times
        come from two processes' clocks, so a skewed wait is never below 0.
        """
        if work.type == events_pb2.EVENT_TYPE_RETRYING and work.retrying.HasField("next_attempt_time"):
            ready = work.retrying.next_attempt_time
        else:
            ready = work.time
        self._queue_wait[started.mission_type].observe(max(0.0, _seconds(started.time) - _seconds(ready)))

    def attempt_finished(self, mission_type: str, outcome: Outcome) -> None:
        self._durations[attempt_outcome(outcome)][mission_type].observe(outcome.duration.total_seconds())

    def sample(
        self,
        running: Callable[[], int],
        waiting: Callable[[], int],
        unconfirmed: Callable[[], int],
        undecodable: Callable[[], int],
        awaiting_word: Callable[[], int],
    ) -> None:
        """What the consumer and the retrying publisher count anyway, read when scraped."""
        register_undecodable(self.registry, "work", undecodable)
        Gauge("missions_worker_running", "Missions this worker is running now.", registry=self.registry).set_function(
            running
        )
        Gauge(
            "missions_worker_waiting",
            "Deliveries this worker holds waiting for a run slot (its look-ahead, at most --concurrency).",
            registry=self.registry,
        ).set_function(waiting)
        Gauge(
            "missions_outbox_depth",
            "Events this worker is waiting to have confirmed (retried through broker outages).",
            registry=self.registry,
        ).set_function(unconfirmed)
        Gauge(
            "missions_worker_awaiting_word",
            "Attempts this worker has published STARTED for and waits to hear from the service whether to run.",
            registry=self.registry,
        ).set_function(awaiting_word)
