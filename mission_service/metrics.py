"""The service's Prometheus metrics: missions counted from the log it follows, end-to-end
latency, WatchEvents subscribers, and the follower's position.

The log is the truth, so the mission counters are the service's (a worker counts only
its own attempts' durations): a dashboard summing the service and its workers counts
each mission once. Every replica follows the whole log, so across replicas of one
namespace take the max, not the sum (docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from google.protobuf import timestamp_pb2
from prometheus_client import Counter, Gauge, Histogram

from mission_service.follower import LogFollower
from mission_service.watch import Hub
from missions.events import FINAL_EVENT_TYPES
from missions.metrics import (
    DURATION_BUCKETS,
    BrokerReconnects,
    ByType,
    MissionTypes,
    PublishedEvents,
    process_registry,
    register_sampled_counter,
    register_undecodable,
)
from missions.v1 import events_pb2, mission_pb2

__all__ = ["ServiceMetrics"]

E = events_pb2

# The counter of each event type in the log, by mission type (PROGRESS is not counted).
_COUNTED = {
    E.EVENT_TYPE_CREATED: ("missions_submitted_total", "Missions submitted (CREATED events in the log)."),
    E.EVENT_TYPE_STARTED: ("missions_started_total", "Attempts started (STARTED events in the log)."),
    E.EVENT_TYPE_COMPLETED: ("missions_succeeded_total", "Missions succeeded (COMPLETED events in the log)."),
    E.EVENT_TYPE_FAILED: ("missions_failed_total", "Attempts failed, retried or not (FAILED events in the log)."),
    E.EVENT_TYPE_RETRYING: ("missions_retried_total", "Retries scheduled (RETRYING events in the log)."),
    E.EVENT_TYPE_DEAD_LETTERED: (
        "missions_dead_lettered_total",
        "Missions dead-lettered (DEAD_LETTERED events in the log).",
    ),
    E.EVENT_TYPE_CANCELLED: ("missions_cancelled_total", "Missions cancelled (CANCELLED events in the log)."),
    E.EVENT_TYPE_REDRIVEN: ("missions_redriven_total", "Missions redriven (REDRIVEN events in the log)."),
    E.EVENT_TYPE_PURGED: ("missions_purged_total", "Dead letters purged (PURGED events in the log)."),
    E.EVENT_TYPE_DUE: ("missions_due_total", "Delayed missions that reached their due time (DUE events in the log)."),
}

# Submission times kept for missions in flight; past this the oldest is forgotten, and
# its final event reads the time from the store instead.
_TRACKED_MISSIONS = 100_000

MissionLookup = Callable[[str], mission_pb2.Mission | None]


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _ready(mission: mission_pb2.Mission) -> float:
    """When ``mission`` could first run: its submission, or its due time if later."""
    return max(_seconds(mission.create_time), _seconds(mission.due_time))


class _SubmissionTimes:
    """When each mission in flight was submitted, so timing its final event needs no store
    read; after a restart, or past the bound, the store answers."""

    def __init__(self, lookup: MissionLookup, bound: int = _TRACKED_MISSIONS) -> None:
        self._lookup = lookup
        self._bound = bound
        self._times: dict[str, float] = {}

    def remember(self, mission: mission_pb2.Mission) -> None:
        if len(self._times) >= self._bound:
            del self._times[next(iter(self._times))]  # the oldest: dicts keep insertion order
        self._times[mission.id] = _ready(mission)

    def pop(self, mission_id: str) -> float | None:
        submitted = self._times.pop(mission_id, None)
        if submitted is None:
            mission = self._lookup(mission_id)
            if mission is None or not mission.HasField("create_time"):
                return None
            submitted = _ready(mission)
        return submitted


class ServiceMetrics:
    """Every metric of one mission-service replica, in its own registry.

    ``lookup`` reads a mission from the store: the submission time of a mission whose
    final event arrives after a restart.
    """

    def __init__(self, lookup: MissionLookup) -> None:
        self.registry = process_registry()
        types = MissionTypes()
        self.published = PublishedEvents(self.registry)
        self.reconnects = BrokerReconnects(self.registry)
        self._counts = {
            kind: ByType(Counter(name, documentation, ["type"], registry=self.registry), types)
            for kind, (name, documentation) in _COUNTED.items()
        }
        self._end_to_end = ByType(
            Histogram(
                "missions_end_to_end_seconds",
                "From submission (or due time, if later) to the mission's final event (COMPLETED, CANCELLED,"
                " DEAD_LETTERED), by mission type.",
                ["type"],
                buckets=DURATION_BUCKETS,
                registry=self.registry,
            ),
            types,
        )
        self._submitted = _SubmissionTimes(lookup)

    def count_applied(self, batch: Sequence[events_pb2.MissionEvent]) -> None:
        """Count a batch the follower applied: per event a dict lookup and an increment."""
        for event in batch:
            kind = event.type
            counts = self._counts.get(kind)
            if counts is None:
                continue
            counts[event.mission_type].inc()
            if kind == E.EVENT_TYPE_CREATED:
                self._submitted.remember(event.created.mission)
            elif kind == E.EVENT_TYPE_REDRIVEN:
                self._submitted.remember(event.redriven.mission)
            elif kind in FINAL_EVENT_TYPES:
                submitted = self._submitted.pop(event.mission_id)
                if submitted is not None:
                    latency = max(0.0, _seconds(event.time) - submitted)  # two clocks: never below 0
                    self._end_to_end[event.mission_type].observe(latency)

    def sample(self, hub: Hub, follower: LogFollower) -> None:
        """What the hub and the follower count anyway, read when scraped."""
        Gauge(
            "missions_watch_subscribers", "Live WatchEvents streams on this replica.", registry=self.registry
        ).set_function(lambda: len(hub))
        register_sampled_counter(
            self.registry,
            "missions_watch_dropped_total",
            "WatchEvents streams this replica ended early: its buffer overflowed (lagging) or the"
            " replica stopped (stopping); the client resumes from its last sequence.",
            {("lagging",): lambda: hub.stats.lagging, ("stopping",): lambda: hub.stats.stopping},
            labels=("reason",),
        )
        register_sampled_counter(
            self.registry,
            "missions_watch_progress_coalesced_total",
            "PROGRESS events a slow subscriber never got because a newer one of the same mission replaced them.",
            {(): lambda: hub.stats.coalesced},
        )
        Gauge(
            "missions_log_position", "Sequence of the last log event this replica applied.", registry=self.registry
        ).set_function(lambda: follower.position)
        register_sampled_counter(
            self.registry,
            "missions_log_events_read_total",
            "Events this replica read from the log (duplicates included); sequences have gaps, count with this.",
            {(): lambda: follower.tally.events},
        )
        register_sampled_counter(
            self.registry,
            "missions_log_records_read_total",
            "Log records this replica read; events per record show how much group commit shares.",
            {(): lambda: follower.tally.records},
        )
        register_undecodable(self.registry, "log", lambda: follower.tally.skipped)
