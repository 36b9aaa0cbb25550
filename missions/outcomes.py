"""How an attempt ends, and the events that say so.

COMPLETED; or FAILED then RETRYING; or FAILED then DEAD_LETTERED. Workers publish them
for the attempts they run, the service for attempts whose worker was lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from google.protobuf import struct_pb2

from missions.events import duration
from missions.v1 import events_pb2, mission_pb2

__all__ = ["Backoff", "EventFactory", "Outcome", "dead_lettered", "outcome_events"]

log = logging.getLogger(__name__)

E = events_pb2

EventFactory = Callable[[events_pb2.EventType.ValueType], events_pb2.MissionEvent]
# The delay before the next attempt, given the attempt that failed (1-based).
Backoff = Callable[[int], timedelta]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished attempt: exactly one of ``result`` and ``error`` is set."""

    duration: timedelta
    result: struct_pb2.Struct | None = None
    error: mission_pb2.MissionError | None = None


def outcome_events(
    mission: mission_pb2.Mission, outcome: Outcome, event: EventFactory, backoff: Backoff
) -> list[events_pb2.MissionEvent]:
    """The events to publish, in order, for ``mission`` whose current attempt ended with ``outcome``."""
    if outcome.result is not None:
        done = event(E.EVENT_TYPE_COMPLETED)
        done.completed.result.CopyFrom(outcome.result)
        done.completed.duration.CopyFrom(duration(outcome.duration))
        log.debug("mission %s attempt %d succeeded in %s", mission.id, mission.attempt, outcome.duration)
        return [done]
    assert outcome.error is not None
    error = outcome.error
    will_retry = error.retryable and mission.attempt < mission.max_attempts
    failed = event(E.EVENT_TYPE_FAILED)
    failed.failed.error.CopyFrom(error)
    failed.failed.will_retry = will_retry
    failed.failed.duration.CopyFrom(duration(outcome.duration))
    log.info(
        "mission %s attempt %d failed (%s: %s)%s",
        mission.id,
        mission.attempt,
        error.type,
        error.message,
        "; will retry" if will_retry else "",
    )
    if will_retry:
        delay = backoff(mission.attempt)
        retry = event(E.EVENT_TYPE_RETRYING)
        retry.retrying.error.CopyFrom(error)
        retry.retrying.delay.CopyFrom(duration(delay))
        retry.retrying.next_attempt_time.FromDatetime(retry.time.ToDatetime() + delay)
        _snapshot(retry.retrying.mission, mission, mission_pb2.MISSION_STATE_RETRYING, error)
        return [failed, retry]
    return [failed, dead_lettered(mission, error, event)]


def dead_lettered(
    mission: mission_pb2.Mission, error: mission_pb2.MissionError, event: EventFactory
) -> events_pb2.MissionEvent:
    """The DEAD_LETTERED that follows the FAILED (``error``) of ``mission``'s last attempt."""
    dead = event(E.EVENT_TYPE_DEAD_LETTERED)
    reason = "attempts exhausted" if error.retryable else "non-retryable error"
    dead.dead_lettered.reason = f"{reason} after attempt {mission.attempt} of {mission.max_attempts}"
    dead.dead_lettered.last_error.CopyFrom(error)
    _snapshot(dead.dead_lettered.mission, mission, mission_pb2.MISSION_STATE_FAILED, error)
    return dead


def _snapshot(
    target: mission_pb2.Mission,
    mission: mission_pb2.Mission,
    state: mission_pb2.MissionState.ValueType,
    error: mission_pb2.MissionError,
) -> None:
    target.CopyFrom(mission)
    target.state = state
    target.error.CopyFrom(error)
