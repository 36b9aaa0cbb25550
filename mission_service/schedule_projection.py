"""Schedule state as a fold over its events (the SCHEDULE_* types), as projection.py is for missions."""

from __future__ import annotations

import logging

from mission_service.recurrence import RecurrenceError, recurrence, timestamp
from missions.v1 import events_pb2, schedule_pb2

__all__ = ["apply", "is_duplicate"]

log = logging.getLogger(__name__)

E = events_pb2
S = schedule_pb2


def is_duplicate(current: schedule_pb2.Schedule | None, deleted: bool, event: events_pb2.MissionEvent) -> bool:
    """Whether ``event`` changes nothing and no reader may see it: a second SCHEDULE_CREATED
    of one id (concurrent creations, or an id used before), any event of a schedule unknown
    or deleted, a pause of a paused schedule or a resumption of an active one (concurrent
    calls), and a firing of a time already handled (two replicas fired it)."""
    if event.type == E.EVENT_TYPE_SCHEDULE_CREATED:
        return current is not None
    if current is None or deleted:
        return True
    if event.type == E.EVENT_TYPE_SCHEDULE_PAUSED:
        return current.state == S.SCHEDULE_STATE_PAUSED
    if event.type == E.EVENT_TYPE_SCHEDULE_RESUMED:
        return current.state == S.SCHEDULE_STATE_ACTIVE
    if event.type == E.EVENT_TYPE_SCHEDULE_FIRED:
        fired = event.schedule_fired.fire_time.ToNanoseconds()
        return current.HasField("last_fire_time") and fired <= current.last_fire_time.ToNanoseconds()
    return False


def apply(current: schedule_pb2.Schedule | None, event: events_pb2.MissionEvent) -> schedule_pb2.Schedule:
    """The schedule after ``event``, which is_duplicate did not refuse."""
    schedule = schedule_pb2.Schedule()
    if event.type == E.EVENT_TYPE_SCHEDULE_CREATED or current is None:
        schedule.CopyFrom(event.schedule_created.schedule)
        schedule.state = S.SCHEDULE_STATE_ACTIVE
    else:
        schedule.CopyFrom(current)
    if event.type == E.EVENT_TYPE_SCHEDULE_PAUSED:
        schedule.state = S.SCHEDULE_STATE_PAUSED
        schedule.ClearField("next_fire_time")
    elif event.type == E.EVENT_TYPE_SCHEDULE_RESUMED:
        schedule.state = S.SCHEDULE_STATE_ACTIVE
        _fire_next(schedule, after=event.time.ToNanoseconds())
    elif event.type == E.EVENT_TYPE_SCHEDULE_DELETED:
        schedule.ClearField("next_fire_time")
    elif event.type == E.EVENT_TYPE_SCHEDULE_FIRED:
        fired = event.schedule_fired
        schedule.last_fire_time.CopyFrom(fired.fire_time)
        if fired.mission_id:
            schedule.last_mission_id = fired.mission_id
            schedule.fire_count += 1
        else:
            schedule.skip_count += 1
        if schedule.state == S.SCHEDULE_STATE_ACTIVE:  # a firing that raced a pause leaves it paused
            _fire_next(schedule, after=fired.fire_time.ToNanoseconds())
    schedule.last_sequence = event.sequence
    schedule.update_time.CopyFrom(event.time)
    return schedule


def _fire_next(schedule: schedule_pb2.Schedule, *, after: int) -> None:
    try:
        schedule.next_fire_time.CopyFrom(timestamp(recurrence(schedule).next_after(after)))
    except RecurrenceError as exc:  # checked at creation: only a cron dialect changed since
        log.error("schedule %s no longer fires: %s", schedule.id, exc)
        schedule.ClearField("next_fire_time")
