"""Builders for the events and requests the unit tests feed to the code under test, and a
reader of the error details it answers with."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from google.protobuf import any_pb2, struct_pb2, timestamp_pb2

from missions.events import duration
from missions.v1 import events_pb2, mission_pb2
from worker_service.context import MissionContext

__all__ = ["EventLog", "Progress", "details_of", "mission_context", "struct", "time_of"]

E = events_pb2
M = mission_pb2

# Event times are derived from the sequence, so tests can predict every timestamp.
_EPOCH = 1_700_000_000


def struct(**values: Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def time_of(sequence: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=_EPOCH + sequence)


def details_of(details: Any, kind: type[Any]) -> list[Any]:
    """The messages of type ``kind`` among a google.rpc.Status's packed ``details``."""
    found = []
    for packed in details:
        assert isinstance(packed, any_pb2.Any)
        if packed.Is(kind.DESCRIPTOR):
            message = kind()
            packed.Unpack(message)
            found.append(message)
    return found


class EventLog:
    """Builds missions' events numbered like the log numbers them: 1, 2, 3, ..."""

    def __init__(self, start: int = 0) -> None:
        self.sequence = start
        self.events: list[events_pb2.MissionEvent] = []
        self._types: dict[str, str] = {}
        self._attempts: dict[str, int] = {}
        self._generations: dict[str, int] = {}
        self._missions: dict[str, mission_pb2.Mission] = {}

    def _next(self, mission_id: str, kind: events_pb2.EventType.ValueType) -> events_pb2.MissionEvent:
        self.sequence += 1
        event = events_pb2.MissionEvent(
            id=str(uuid.uuid4()),
            sequence=self.sequence,
            mission_id=mission_id,
            type=kind,
            time=time_of(self.sequence),
            source="tests",
            attempt=self._attempts.get(mission_id, 0),
            correlation_id=f"corr-{mission_id}",
            mission_type=self._types.get(mission_id, ""),
            generation=self._generations.get(mission_id, 0),
        )
        self.events.append(event)
        return event

    def created(self, mission_id: str, mission_type: str = "echo", **fields: Any) -> events_pb2.MissionEvent:
        self._types[mission_id] = mission_type
        defaults: dict[str, Any] = {"priority": M.PRIORITY_NORMAL, "max_attempts": 3}
        mission = M.Mission(id=mission_id, type=mission_type, state=M.MISSION_STATE_QUEUED, **{**defaults, **fields})
        self._missions[mission_id] = mission
        event = self._next(mission_id, E.EVENT_TYPE_CREATED)
        mission.create_time.CopyFrom(event.time)
        event.created.mission.CopyFrom(mission)
        return event

    def scheduled(self, mission_id: str, due_in: int = 10, mission_type: str = "echo") -> events_pb2.MissionEvent:
        """A CREATED of a mission due ``due_in`` seconds after its creation (SCHEDULED)."""
        event = self.created(mission_id, mission_type)
        event.created.mission.due_time.FromSeconds(event.time.seconds + due_in)
        self._missions[mission_id].due_time.CopyFrom(event.created.mission.due_time)
        return event

    def due(self, mission_id: str) -> events_pb2.MissionEvent:
        event = self._next(mission_id, E.EVENT_TYPE_DUE)
        event.due.due_time.CopyFrom(self._missions[mission_id].due_time)
        return event

    def _snapshot(self, mission_id: str, state: mission_pb2.MissionState.ValueType) -> mission_pb2.Mission:
        """The mission as an event carries it: as created, at its attempt and generation (redrive_count)."""
        mission = M.Mission()
        mission.CopyFrom(self._missions.get(mission_id, M.Mission(id=mission_id, max_attempts=3)))
        mission.state = state
        mission.attempt = self._attempts.get(mission_id, 0)
        mission.redrive_count = self._generations.get(mission_id, 0)
        return mission

    def started(
        self, mission_id: str, attempt: int = 1, worker_id: str = "worker-1", session: str = ""
    ) -> events_pb2.MissionEvent:
        self._attempts[mission_id] = attempt
        event = self._next(mission_id, E.EVENT_TYPE_STARTED)
        event.started.worker_id = worker_id
        event.started.worker_session = session
        return event

    def progress(self, mission_id: str, fraction: float, message: str = "") -> events_pb2.MissionEvent:
        event = self._next(mission_id, E.EVENT_TYPE_PROGRESS)
        event.progress.fraction = fraction
        event.progress.message = message
        return event

    def completed(self, mission_id: str, **result: Any) -> events_pb2.MissionEvent:
        event = self._next(mission_id, E.EVENT_TYPE_COMPLETED)
        event.completed.result.CopyFrom(struct(**result))
        event.completed.duration.CopyFrom(duration(timedelta(milliseconds=5)))
        return event

    def failed(
        self, mission_id: str, will_retry: bool, error_type: str = "ValueError", message: str = "boom"
    ) -> events_pb2.MissionEvent:
        event = self._next(mission_id, E.EVENT_TYPE_FAILED)
        event.failed.error.CopyFrom(M.MissionError(type=error_type, message=message, retryable=will_retry))
        event.failed.will_retry = will_retry
        return event

    def retrying(
        self, mission_id: str, delay_ms: int = 1000, error_type: str = "ValueError"
    ) -> events_pb2.MissionEvent:
        event = self._next(mission_id, E.EVENT_TYPE_RETRYING)
        event.retrying.error.CopyFrom(M.MissionError(type=error_type, message="boom", retryable=True))
        event.retrying.delay.CopyFrom(duration(timedelta(milliseconds=delay_ms)))
        event.retrying.mission.CopyFrom(self._snapshot(mission_id, M.MISSION_STATE_RETRYING))
        return event

    def cancelled(self, mission_id: str, reason: str = "no longer needed") -> events_pb2.MissionEvent:
        event = self._next(mission_id, E.EVENT_TYPE_CANCELLED)
        event.cancelled.reason = reason
        return event

    def dead_lettered(self, mission_id: str, error_type: str = "ValueError") -> events_pb2.MissionEvent:
        event = self._next(mission_id, E.EVENT_TYPE_DEAD_LETTERED)
        event.dead_lettered.reason = "attempts exhausted"
        event.dead_lettered.last_error.CopyFrom(M.MissionError(type=error_type, message="boom", retryable=False))
        event.dead_lettered.mission.CopyFrom(self._snapshot(mission_id, M.MISSION_STATE_FAILED))
        return event

    def redriven(self, mission_id: str, max_attempts: int = 3, requested_by: str = "ops") -> events_pb2.MissionEvent:
        """A new generation: the next redrive_count, attempt 0, a fresh attempt budget."""
        generation = self._generations.get(mission_id, 0) + 1
        self._generations[mission_id] = generation
        self._attempts[mission_id] = 0
        event = self._next(mission_id, E.EVENT_TYPE_REDRIVEN)
        fresh = self._snapshot(mission_id, M.MISSION_STATE_QUEUED)
        fresh.max_attempts = max_attempts
        event.redriven.mission.CopyFrom(fresh)
        event.redriven.requested_by = requested_by
        event.redriven.redrive_count = generation
        return event


class Progress:
    """A MissionContext's progress sink that records every report."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, str]] = []
        self.on_report: Callable[[float, str], None] | None = None

    async def __call__(self, fraction: float, message: str) -> None:
        self.reports.append((fraction, message))
        if self.on_report is not None:
            self.on_report(fraction, message)


def mission_context(
    mission_type: str = "echo", attempt: int = 1, max_attempts: int = 3
) -> tuple[MissionContext, Progress]:
    """A real MissionContext wired to a recording progress sink instead of the broker."""
    progress = Progress()
    ctx = MissionContext(
        mission_id="m1",
        mission_type=mission_type,
        attempt=attempt,
        max_attempts=max_attempts,
        labels={"team": "ops"},
        _progress=progress,
    )
    return ctx, progress
