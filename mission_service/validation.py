"""Request validation: every check names the field and the limit it enforces."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from google.protobuf import struct_pb2

from missions.errors import InvalidArgumentError
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2

__all__ = [
    "Limits",
    "decode_page_token",
    "encode_page_token",
    "page_size",
    "parse_label_selector",
    "validate_states",
    "validate_submission",
    "validate_watch",
]

# Largest value an SQLite INTEGER (and a log position) can hold.
_MAX_POSITION = 2**63 - 1

_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]*")


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits, enforced before anything is queued. Defaults are the documented ones."""

    max_type_length: int = 128
    max_payload_bytes: int = 256 * 1024
    max_payload_depth: int = 32
    max_labels: int = 64
    max_label_key_length: int = 63
    max_label_value_length: int = 256
    max_idempotency_key_length: int = 256
    default_max_attempts: int = 3
    max_max_attempts: int = 100
    max_timeout: timedelta = timedelta(days=1)
    default_page_size: int = 100
    max_page_size: int = 1000
    max_watch_mission_ids: int = 1000
    max_watch_mission_types: int = 100
    max_label_selector_pairs: int = 16


def validate_submission(request: mission_service_pb2.SubmitMissionRequest, limits: Limits) -> None:
    """Raise InvalidArgumentError for the first field of ``request`` that breaks a rule."""
    _check_type(request.type, limits)
    size = request.payload.ByteSize()
    if size > limits.max_payload_bytes:
        raise InvalidArgumentError(
            "payload", f"is {size} bytes serialized; the limit is {limits.max_payload_bytes} bytes"
        )
    if _depth(request.payload) > limits.max_payload_depth:
        raise InvalidArgumentError("payload", f"nests deeper than {limits.max_payload_depth} levels")
    if request.priority not in mission_pb2.Priority.values():
        raise InvalidArgumentError("priority", f"unknown value {request.priority}")
    if request.max_attempts < 0 or request.max_attempts > limits.max_max_attempts:
        raise InvalidArgumentError(
            "max_attempts", f"must be between 0 (default) and {limits.max_max_attempts}, got {request.max_attempts}"
        )
    timeout = request.timeout.ToTimedelta()
    if timeout < timedelta(0) or timeout > limits.max_timeout:
        raise InvalidArgumentError("timeout", f"must be between 0 (default) and {limits.max_timeout}, got {timeout}")
    if len(request.idempotency_key) > limits.max_idempotency_key_length:
        raise InvalidArgumentError("idempotency_key", f"is longer than {limits.max_idempotency_key_length} characters")
    _check_labels(request.labels, limits)


def _check_type(mission_type: str, limits: Limits) -> None:
    if not mission_type:
        raise InvalidArgumentError("type", "is required")
    if len(mission_type) > limits.max_type_length:
        raise InvalidArgumentError("type", f"is longer than {limits.max_type_length} characters")
    if not _TYPE_PATTERN.fullmatch(mission_type):
        raise InvalidArgumentError(
            "type", f"{mission_type!r} must start with a letter and hold only letters, digits, '_', '-', '.', ':'"
        )


def _check_labels(labels: Mapping[str, str], limits: Limits) -> None:
    items = list(labels.items())
    if len(items) > limits.max_labels:
        raise InvalidArgumentError("labels", f"has {len(items)} entries; the limit is {limits.max_labels}")
    for key, value in items:
        if not key or len(key) > limits.max_label_key_length:
            raise InvalidArgumentError(
                "labels", f"key {key[:70]!r} must be 1..{limits.max_label_key_length} characters"
            )
        if len(value) > limits.max_label_value_length:
            raise InvalidArgumentError(
                f"labels[{key}]", f"value is longer than {limits.max_label_value_length} characters"
            )


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


def validate_states(states: Sequence[int]) -> None:
    for state in states:
        if state not in mission_pb2.MissionState.values() or state == mission_pb2.MISSION_STATE_UNSPECIFIED:
            raise InvalidArgumentError("states", f"unknown mission state {state}")


def page_size(requested: int, limits: Limits) -> int:
    if requested < 0:
        raise InvalidArgumentError("page_size", f"must not be negative, got {requested}")
    return min(requested or limits.default_page_size, limits.max_page_size)


def _filter_digest(states: Sequence[int], mission_type: str) -> str:
    canonical = json.dumps([sorted(set(states)), mission_type])
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(after: int, states: Sequence[int], mission_type: str) -> str:
    raw = json.dumps({"after": after, "filter": _filter_digest(states, mission_type)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, states: Sequence[int], mission_type: str) -> int:
    """The position a page token encodes; 0 for an empty token."""
    if not token:
        return 0
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, digest = raw["after"], raw["filter"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError("page_token", "is not a page token issued for this list") from exc
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= _MAX_POSITION:
        raise InvalidArgumentError("page_token", "is not a page token issued for this list")
    if digest != _filter_digest(states, mission_type):
        raise InvalidArgumentError("page_token", "was issued for different filters (states, type)")
    return after


def validate_watch(request: mission_service_pb2.WatchEventsRequest, limits: Limits) -> None:
    if len(request.mission_ids) > limits.max_watch_mission_ids:
        raise InvalidArgumentError(
            "mission_ids", f"has {len(request.mission_ids)} ids; the limit is {limits.max_watch_mission_ids}"
        )
    if any(not mission_id for mission_id in request.mission_ids):
        raise InvalidArgumentError("mission_ids", "contains an empty id")
    if len(request.mission_types) > limits.max_watch_mission_types:
        raise InvalidArgumentError(
            "mission_types", f"has {len(request.mission_types)} entries; the limit is {limits.max_watch_mission_types}"
        )
    parse_label_selector(request.label_selector, limits)
    for event_type in request.types:
        if event_type not in events_pb2.EventType.values() or event_type == events_pb2.EVENT_TYPE_UNSPECIFIED:
            raise InvalidArgumentError("types", f"unknown event type {event_type}")


def parse_label_selector(selector: str, limits: Limits) -> tuple[tuple[str, str], ...]:
    """``"k=v,k2=v2"`` as sorted (key, value) pairs; empty for an empty selector."""
    if not selector.strip():
        return ()
    pairs = []
    for part in selector.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError("label_selector", f"{part.strip()!r} is not key=value")
        pairs.append((key.strip(), value.strip()))
    if len(pairs) > limits.max_label_selector_pairs:
        raise InvalidArgumentError(
            "label_selector", f"has {len(pairs)} pairs; the limit is {limits.max_label_selector_pairs}"
        )
    return tuple(sorted(dict(pairs).items()))
