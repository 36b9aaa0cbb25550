"""Request validation: every check names the field and the limit it enforces."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Literal

from google.protobuf import struct_pb2, timestamp_pb2

from mission_service.labels import check_label, parse_label_selector
from mission_service.limits import Limits, check_count, named_limit
from mission_service.recurrence import RecurrenceError, recurrence
from missions.errors import InvalidArgumentError
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2, schedule_pb2

__all__ = [
    "TimeBound",
    "due_time",
    "newest_first",
    "time_bounds",
    "validate_batch",
    "validate_list",
    "validate_mission_id",
    "validate_schedule",
    "validate_schedule_id",
    "validate_states",
    "validate_submission",
    "validate_watch",
]

# The time bounds of ListMissionsRequest.
TimeBound = Literal["min_create_time", "max_create_time", "min_end_time", "max_end_time"]

_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]*")
# The leading part of a mission id (a UUID) long enough to be worth an index lookup.
_ID_PREFIX_PATTERN = re.compile(r"[0-9A-Fa-f-]{8,36}")


def validate_batch(requests: Sequence[mission_service_pb2.SubmitMissionRequest], limits: Limits) -> None:
    """A SubmitMissions batch as a whole: at least one mission, at most the limit."""
    if not requests:
        raise InvalidArgumentError("missions", "is empty; a batch needs at least one mission")
    check_count("missions", len(requests), "missions", "max_batch_missions", limits)


def validate_submission(request: mission_service_pb2.SubmitMissionRequest, limits: Limits) -> None:
    """Raise InvalidArgumentError for the first field of ``request`` that breaks a rule."""
    _check_type("type", request.type, limits)
    size = request.payload.ByteSize()
    if size > limits.max_payload_bytes:
        raise InvalidArgumentError(
            "payload",
            f"is {size} bytes serialized; the limit is {limits.max_payload_bytes} bytes"
            f" {named_limit('max_payload_bytes')}",
        )
    if _depth(request.payload) > limits.max_payload_depth:
        raise InvalidArgumentError(
            "payload", f"nests deeper than {limits.max_payload_depth} levels {named_limit('max_payload_depth')}"
        )
    if request.priority not in mission_pb2.Priority.values():
        raise InvalidArgumentError("priority", f"unknown value {request.priority}")
    if request.max_attempts < 0 or request.max_attempts > limits.max_max_attempts:
        raise InvalidArgumentError(
            "max_attempts",
            f"must be between 0 (default) and {limits.max_max_attempts} {named_limit('max_max_attempts')},"
            f" got {request.max_attempts}",
        )
    _check_timeout(request, limits)
    _check_length(
        "idempotency_key", request.idempotency_key, limits.max_idempotency_key_length, "max_idempotency_key_length"
    )
    _check_labels(request.labels, limits)


# AIP-122 resource ids: what CreateSchedule accepts as schedule_id.
_SCHEDULE_ID_PATTERN = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")


def validate_schedule_id(schedule_id: str, field: str = "schedule_id") -> None:
    """An id of an existing schedule: given, and not longer than a generated one or a chosen one."""
    if not schedule_id or len(schedule_id) > 63:
        raise InvalidArgumentError(field, "must be 1 to 63 characters")


def validate_schedule(
    request: mission_service_pb2.CreateScheduleRequest,
    submission: mission_service_pb2.SubmitMissionRequest,
    limits: Limits,
) -> None:
    """A CreateSchedule request, whose firings each submit ``submission`` (its template, as a
    firing submits it); InvalidArgumentError names the field at fault."""
    if request.schedule_id and not _SCHEDULE_ID_PATTERN.fullmatch(request.schedule_id):
        raise InvalidArgumentError(
            "schedule_id",
            "must be 1 to 63 lowercase letters, digits and '-', starting with a letter and not ending with '-'",
        )
    schedule = request.schedule
    if not schedule.HasField("mission_template"):
        raise InvalidArgumentError("schedule.mission_template", "is required")
    try:
        validate_submission(submission, limits)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"schedule.mission_template.{exc.field}", exc.description) from None
    if schedule.overlap_policy not in schedule_pb2.OverlapPolicy.values():
        raise InvalidArgumentError("schedule.overlap_policy", f"unknown value {schedule.overlap_policy}")
    if schedule.catch_up_policy not in schedule_pb2.CatchUpPolicy.values():
        raise InvalidArgumentError("schedule.catch_up_policy", f"unknown value {schedule.catch_up_policy}")
    try:
        recurrence(schedule)
    except RecurrenceError as exc:
        raise InvalidArgumentError(exc.field, exc.description) from None


# The seconds a Timestamp may hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_TIMESTAMP_SECONDS = range(-62_135_596_800, 253_402_300_800)


def due_time(
    request: mission_service_pb2.SubmitMissionRequest, created: timestamp_pb2.Timestamp, limits: Limits | None
) -> timestamp_pb2.Timestamp | None:
    """When the mission ``request`` submits at ``created`` is due: the later of its ``due_time``
    and ``created`` + ``delay``, None when it gives neither. InvalidArgumentError naming the
    field for a negative delay, a malformed time, or a due time beyond ``limits.max_delay``
    (not checked without ``limits``: a keyed retry's request, counted from the creation of
    the mission it repeats)."""
    asked: list[tuple[int, str]] = []
    if request.HasField("due_time"):
        stamp = request.due_time
        if stamp.seconds not in _TIMESTAMP_SECONDS or not 0 <= stamp.nanos < 1_000_000_000:
            raise InvalidArgumentError("due_time", "is not a valid timestamp (years 1 to 9999)")
        asked.append((stamp.ToNanoseconds(), "due_time"))
    if request.HasField("delay"):
        delay = request.delay.ToNanoseconds()
        if delay < 0:
            raise InvalidArgumentError("delay", f"must not be negative, got {delay / 1e9:g} s")
        asked.append((created.ToNanoseconds() + delay, "delay"))
    if not asked:
        return None
    due, field = max(asked)
    limit = timedelta.max if limits is None else limits.max_delay
    if due - created.ToNanoseconds() > limit // timedelta(microseconds=1) * 1000:
        raise InvalidArgumentError(
            field,
            f"puts the due time more than {limit.total_seconds():.0f} s ({limit.days} days) ahead"
            f" {named_limit('max_delay')}",
        )
    result = timestamp_pb2.Timestamp()
    result.FromNanoseconds(due)
    return result


def _check_length(field: str, value: str, limit: int, name: str) -> None:
    if len(value) > limit:
        raise InvalidArgumentError(field, f"is longer than {limit} characters {named_limit(name)}")


def _check_timeout(request: mission_service_pb2.SubmitMissionRequest, limits: Limits) -> None:
    try:
        timeout = request.timeout.ToTimedelta()
    except OverflowError:  # seconds beyond what a timedelta holds: certainly too long
        timeout = timedelta.max
    if timeout < timedelta(0) or timeout > limits.max_timeout:
        raise InvalidArgumentError(
            "timeout",
            f"must be between 0 (default) and {limits.max_timeout.total_seconds():.0f} s {named_limit('max_timeout')},"
            f" got {timeout}",
        )


def _check_type(field: str, mission_type: str, limits: Limits) -> None:
    if not mission_type:
        raise InvalidArgumentError(field, "is required")
    _check_length(field, mission_type, limits.max_type_length, "max_type_length")
    # Not configurable: the type is part of routing keys, where '#', '*' and spaces mean something.
    if not _TYPE_PATTERN.fullmatch(mission_type):
        raise InvalidArgumentError(
            field, f"{mission_type!r} must start with a letter and hold only letters, digits, '_', '-', '.', ':'"
        )


def _check_labels(labels: Mapping[str, str], limits: Limits) -> None:
    check_count("labels", len(labels), "entries", "max_labels", limits)
    for key, value in labels.items():
        check_label("labels", key, value, limits)


def _depth(value: struct_pb2.Struct | struct_pb2.ListValue | struct_pb2.Value) -> int:
    """Nesting depth of a Struct tree, iteratively so hostile input cannot blow the stack."""
    deepest = 0
    stack: list[tuple[struct_pb2.Value | struct_pb2.Struct | struct_pb2.ListValue, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, struct_pb2.Struct):
            stack.extend((child, depth + 1) for child in node.fields.values())
        elif isinstance(node, struct_pb2.ListValue):
            stack.extend((child, depth + 1) for child in node.values)
        elif node.HasField("struct_value"):
            stack.append((node.struct_value, depth))
        elif node.HasField("list_value"):
            stack.append((node.list_value, depth))
    return deepest


def validate_mission_id(mission_id: str, limits: Limits, field: str = "mission_id") -> None:
    """A mission id in a request: present and of bounded length."""
    if not mission_id:
        raise InvalidArgumentError(field, "is required")
    _check_length(field, mission_id, limits.max_mission_id_length, "max_mission_id_length")


def validate_states(states: Sequence[int]) -> None:
    for state in states:
        if state not in mission_pb2.MissionState.values() or state == mission_pb2.MISSION_STATE_UNSPECIFIED:
            raise InvalidArgumentError("states", f"unknown mission state {state}")


def validate_list(request: mission_service_pb2.ListMissionsRequest, limits: Limits) -> None:
    """A ListMissions request's filters: states, labels, id prefix, and time bounds in order."""
    validate_states(request.states)
    parse_label_selector(request.label_selector, limits)
    if request.id_prefix and not _ID_PREFIX_PATTERN.fullmatch(request.id_prefix):
        raise InvalidArgumentError(
            "id_prefix", f"{request.id_prefix[:70]!r} must be 8 to 36 hexadecimal digits and dashes"
        )
    time_bounds(request, "min_create_time", "max_create_time")
    time_bounds(request, "min_end_time", "max_end_time")
    newest_first(request.order_by)


# ListMissionsRequest.order_by's orders, as words: AIP-132's grammar, with one field to sort on.
_OLDEST_FIRST: tuple[list[str], ...] = ([], ["create_time"])
_NEWEST_FIRST = ["create_time", "desc"]


def newest_first(order_by: str) -> bool:
    """Whether a ListMissions ``order_by`` lists the newest missions first; InvalidArgumentError
    for an order it does not know. Spaces between its words do not matter (AIP-132)."""
    words = order_by.split()
    if words == _NEWEST_FIRST:
        return True
    if words in _OLDEST_FIRST:
        return False
    raise InvalidArgumentError(
        "order_by",
        f'{order_by[:70]!r} is not an order of this list: use "create_time" (oldest first, the default)'
        ' or "create_time desc" (newest first)',
    )


def time_bounds(
    request: mission_service_pb2.ListMissionsRequest, low: TimeBound, high: TimeBound
) -> tuple[float | None, float | None]:
    """The [``low``, ``high``) bounds ``request`` sets, in epoch seconds (None where unset);
    InvalidArgumentError naming ``high`` when it is earlier than ``low``."""

    def seconds(field: TimeBound) -> float | None:
        return getattr(request, field).ToNanoseconds() / 1e9 if request.HasField(field) else None

    since, before = seconds(low), seconds(high)
    if since is not None and before is not None and before < since:
        raise InvalidArgumentError(high, f"is earlier than {low}")
    return since, before


def validate_watch(request: mission_service_pb2.WatchEventsRequest, limits: Limits) -> None:
    check_count("mission_ids", len(request.mission_ids), "ids", "max_watch_mission_ids", limits)
    for mission_id in request.mission_ids:
        validate_mission_id(mission_id, limits, "mission_ids")
    check_count("mission_types", len(request.mission_types), "entries", "max_watch_mission_types", limits)
    for mission_type in request.mission_types:
        _check_type("mission_types", mission_type, limits)
    parse_label_selector(request.label_selector, limits)
    for event_type in request.types:
        if event_type not in events_pb2.EventType.values() or event_type == events_pb2.EVENT_TYPE_UNSPECIFIED:
            raise InvalidArgumentError("types", f"unknown event type {event_type}")
