"""Mission state as a fold over its events: ``apply`` is the whole state machine."""

from __future__ import annotations

import logging

from missions.events import TERMINAL_STATES, is_scheduled
from missions.v1 import events_pb2, mission_pb2

__all__ = ["apply", "is_duplicate"]

log = logging.getLogger(__name__)

E = events_pb2
M = mission_pb2


def is_duplicate(current: mission_pb2.Mission | None, event: events_pb2.MissionEvent) -> bool:
    """Whether ``event`` repeats what the log already holds, or changes nothing and is
    refused, so that no reader may see it: a second CREATED of one mission (concurrent
    submissions with one idempotency key), a REDRIVEN or PURGED that does not apply
    (concurrent redrives and purges: only a dead letter takes either), a STARTED of an
    attempt that has already started (a copy of its work message, or a worker asking
    again: only the first STARTED runs), a STARTED of a mission already over (cancelled,
    or finished: the service refuses it), a withdrawn STARTED (its worker was refused),
    and a DUE of a mission no longer SCHEDULED (two replicas fired it, or it was cancelled).
    """
    if current is None:
        return False
    if event.type == E.EVENT_TYPE_CREATED:
        return True
    if event.type in (E.EVENT_TYPE_REDRIVEN, E.EVENT_TYPE_PURGED):
        return not current.dead_lettered
    if event.type == E.EVENT_TYPE_DUE:
        return current.state != M.MISSION_STATE_SCHEDULED
    if event.type == E.EVENT_TYPE_STARTED:
        return (
            event.started.withdrawn
            or current.state in TERMINAL_STATES
            or event.generation < current.redrive_count
            or (event.generation == current.redrive_count and 0 < event.attempt <= current.attempt)
        )
    return False


def apply(current: mission_pb2.Mission | None, event: events_pb2.MissionEvent) -> mission_pb2.Mission | None:
    """The mission after ``event``; None when the event cannot apply to anything.

    Terminal states absorb: a late or redelivered event after SUCCEEDED, FAILED or
    CANCELLED still advances ``last_sequence`` but changes nothing else, except that
    DEAD_LETTERED marks a FAILED mission dead-lettered, and REDRIVEN starts a
    dead-lettered one over while PURGED leaves it FAILED for good.
    """
    mission = mission_pb2.Mission()
    if current is not None:
        mission.CopyFrom(current)
    elif event.type == E.EVENT_TYPE_CREATED:
        mission.CopyFrom(event.created.mission)
        mission.state = M.MISSION_STATE_SCHEDULED if is_scheduled(mission) else M.MISSION_STATE_QUEUED
        return _touch(mission, event)
    else:
        log.warning("event %s (sequence %d) for unknown mission %s", event.id, event.sequence, event.mission_id)
        return None
    if event.type == E.EVENT_TYPE_CREATED:
        pass  # a duplicate submission of an existing id changes nothing (is_duplicate)
    elif event.type == E.EVENT_TYPE_REDRIVEN:
        if mission.dead_lettered:
            _redrive(mission, event)
    elif event.type == E.EVENT_TYPE_PURGED:
        mission.dead_lettered = False
    elif mission.state not in TERMINAL_STATES:
        _transition(mission, event)
    elif event.type == E.EVENT_TYPE_DEAD_LETTERED and mission.state == M.MISSION_STATE_FAILED:
        mission.dead_lettered = True
        if not mission.HasField("end_time"):
            mission.end_time.CopyFrom(event.time)
    return _touch(mission, event)


def _redrive(mission: mission_pb2.Mission, event: events_pb2.MissionEvent) -> None:
    """A dead-lettered mission starts over: QUEUED, attempt 0, the event's attempt budget."""
    fresh = event.redriven.mission
    mission.state = M.MISSION_STATE_QUEUED
    mission.attempt = 0
    mission.max_attempts = fresh.max_attempts
    mission.redrive_count = fresh.redrive_count
    mission.dead_lettered = False
    mission.progress = 0.0
    mission.progress_message = ""
    for name in ("end_time", "start_time", "result", "error"):
        mission.ClearField(name)


def _transition(mission: mission_pb2.Mission, event: events_pb2.MissionEvent) -> None:
    kind = event.WhichOneof("details")
    if kind in ("failed", "retrying") and event.attempt < mission.attempt:
        # The next attempt's STARTED reached the log first (a retry without delay): this
        # attempt's end no longer describes the mission.
        return
    if kind == "due":
        if mission.state == M.MISSION_STATE_SCHEDULED:
            mission.state = M.MISSION_STATE_QUEUED
    elif kind == "started":
        mission.state = M.MISSION_STATE_RUNNING
        mission.attempt = event.attempt
        mission.worker_id = event.started.worker_id
        mission.worker_session = event.started.worker_session
        mission.start_time.CopyFrom(event.time)
        mission.progress = 0.0
        mission.progress_message = ""
    elif kind == "progress":
        mission.progress = event.progress.fraction
        mission.progress_message = event.progress.message
    elif kind == "completed":
        mission.state = M.MISSION_STATE_SUCCEEDED
        mission.result.CopyFrom(event.completed.result)
        mission.ClearField("error")
        mission.progress = 1.0
        mission.end_time.CopyFrom(event.time)
    elif kind == "failed":
        mission.error.CopyFrom(event.failed.error)
        if not event.failed.will_retry:
            mission.state = M.MISSION_STATE_FAILED
            mission.end_time.CopyFrom(event.time)
    elif kind == "retrying":
        mission.state = M.MISSION_STATE_RETRYING
        mission.error.CopyFrom(event.retrying.error)
    elif kind == "cancelled":
        mission.state = M.MISSION_STATE_CANCELLED
        mission.end_time.CopyFrom(event.time)
    elif kind == "dead_lettered":
        # A mission dead-lettered without a final FAILED (e.g. undeliverable) ends FAILED here.
        mission.state = M.MISSION_STATE_FAILED
        mission.dead_lettered = True
        mission.error.CopyFrom(event.dead_lettered.last_error)
        mission.end_time.CopyFrom(event.time)


def _touch(mission: mission_pb2.Mission, event: events_pb2.MissionEvent) -> mission_pb2.Mission:
    mission.last_sequence = event.sequence
    mission.update_time.CopyFrom(event.time)
    return mission
