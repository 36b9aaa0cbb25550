"""Constructing MissionEvents and the facts about them that every process shares."""

from __future__ import annotations

import uuid
from datetime import timedelta

from google.protobuf import duration_pb2, timestamp_pb2

from missions.v1 import events_pb2, mission_pb2

__all__ = [
    "FINAL_EVENT_TYPES",
    "SCHEDULE_EVENT_TYPES",
    "TERMINAL_STATES",
    "duration",
    "is_final",
    "is_schedule_event",
    "is_scheduled",
    "new_event",
    "now",
    "reissued",
]

E = events_pb2

# The last event a mission ever emits; a watch of that mission may end after it.
FINAL_EVENT_TYPES = frozenset({E.EVENT_TYPE_COMPLETED, E.EVENT_TYPE_CANCELLED, E.EVENT_TYPE_DEAD_LETTERED})
# The events of a schedule rather than of a mission: they name it in ``schedule_id``.
SCHEDULE_EVENT_TYPES = frozenset(
    {
        E.EVENT_TYPE_SCHEDULE_CREATED,
        E.EVENT_TYPE_SCHEDULE_PAUSED,
        E.EVENT_TYPE_SCHEDULE_RESUMED,
        E.EVENT_TYPE_SCHEDULE_DELETED,
        E.EVENT_TYPE_SCHEDULE_FIRED,
    }
)
TERMINAL_STATES = frozenset(
    {
        mission_pb2.MISSION_STATE_SUCCEEDED,
        mission_pb2.MISSION_STATE_FAILED,
        mission_pb2.MISSION_STATE_CANCELLED,
    }
)


def now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def duration(span: timedelta) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromTimedelta(span)
    return value


def is_final(event: events_pb2.MissionEvent) -> bool:
    return event.type in FINAL_EVENT_TYPES


def is_schedule_event(event: events_pb2.MissionEvent) -> bool:
    """Whether ``event`` is a schedule's (no mission's): readers of missions pass it by."""
    return event.type in SCHEDULE_EVENT_TYPES


def is_scheduled(mission: mission_pb2.Mission) -> bool:
    """Whether ``mission`` as submitted waits for its due time (SCHEDULED): due after its
    creation. Both times are in its CREATED event, so every reader of the log, and the
    replica that submits it and so does not dispatch it yet, agree."""
    return mission.HasField("due_time") and mission.due_time.ToNanoseconds() > mission.create_time.ToNanoseconds()


def new_event(
    mission: mission_pb2.Mission,
    event_type: events_pb2.EventType.ValueType,
    *,
    source: str,
    correlation_id: str,
    attempt: int | None = None,
) -> events_pb2.MissionEvent:
    """An event of ``mission`` with a fresh id and time; the caller sets the details."""
    return events_pb2.MissionEvent(
        id=str(uuid.uuid4()),
        mission_id=mission.id,
        type=event_type,
        time=now(),
        source=source,
        attempt=mission.attempt if attempt is None else attempt,
        correlation_id=correlation_id,
        mission_type=mission.type,
        generation=mission.redrive_count,
    )


def reissued(event: events_pb2.MissionEvent) -> events_pb2.MissionEvent:
    """``event`` again under a fresh id and time: the same fact told anew (a worker asking
    again, or withdrawing), which readers tell apart from the first by its id."""
    again = events_pb2.MissionEvent()
    again.CopyFrom(event)
    again.id = str(uuid.uuid4())
    again.time.GetCurrentTime()
    return again
