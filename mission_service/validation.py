"""Request validation: every check names the field and the limit it enforces."""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError

from missions.errors import InvalidArgumentError
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2

__all__ = [
    "Limits",
    "RejectMalformedRequests",
    "decode_page_token",
    "encode_page_token",
    "limit_flag",
    "page_size",
    "parse_label_selector",
    "validate_mission_id",
    "validate_states",
    "validate_submission",
    "validate_watch",
]

# Largest value an SQLite INTEGER (and a log position) can hold.
_MAX_POSITION = 2**63 - 1

_TYPE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]*")


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits, enforced before anything is queued.

    Each field is a ``--<field-name>`` flag of mission-service backed by a
    ``MISSIONS_<FIELD_NAME>`` variable (mission_service/limit_flags.py); the defaults
    below are the documented ones (docs/security.md).

    Attributes:
        max_request_bytes: largest request message the server accepts (gRPC max receive
            message length); larger requests fail with RESOURCE_EXHAUSTED. 1 MiB.
        max_type_length: characters of a mission type (and of a type in a watch filter). 128.
        max_payload_bytes: serialized size of a payload Struct. 256 KiB.
        max_payload_depth: nesting depth of a payload Struct. 32.
        max_labels: labels per mission. 64.
        max_label_key_length: characters of a label key (also in a label selector). 63.
        max_label_value_length: characters of a label value (also in a label selector). 256.
        max_idempotency_key_length: characters of an idempotency key. 256.
        max_mission_id_length: characters of a mission id in a request. 128.
        default_max_attempts: attempts of a mission submitted with max_attempts 0. 3.
        max_max_attempts: the largest max_attempts a request may ask for. 100.
        max_timeout: the longest per-attempt timeout a request may ask for. 1 day.
        default_page_size: page size of a list request with page_size 0. 100.
        max_page_size: larger page sizes are lowered to this. 1000.
        max_watch_mission_ids: mission ids in one WatchEvents filter. 1000.
        max_watch_mission_types: mission types in one WatchEvents filter. 100.
        max_label_selector_pairs: key=value pairs in one label selector. 16.
        max_batch_missions: missions in one SubmitMissions call. 1000.
    """

    max_request_bytes: int = 1024 * 1024
    max_type_length: int = 128
    max_payload_bytes: int = 256 * 1024
    max_payload_depth: int = 32
    max_labels: int = 64
    max_label_key_length: int = 63
    max_label_value_length: int = 256
    max_idempotency_key_length: int = 256
    max_mission_id_length: int = 128
    default_max_attempts: int = 3
    max_max_attempts: int = 100
    max_timeout: timedelta = timedelta(days=1)
    default_page_size: int = 100
    max_page_size: int = 1000
    max_watch_mission_ids: int = 1000
    max_watch_mission_types: int = 100
    max_label_selector_pairs: int = 16
    max_batch_missions: int = 1000


def limit_flag(name: str) -> str:
    """The command-line flag that sets the ``Limits`` field ``name``."""
    return "--" + name.replace("_", "-")


def _limit(name: str) -> str:
    """How an error message names a limit: the field and the flag that raises it."""
    return f"({name}, {limit_flag(name)})"


def validate_batch(requests: Sequence[mission_service_pb2.SubmitMissionRequest], limits: Limits) -> None:
    """A SubmitMissions batch as a whole: at least one mission, at most the limit."""
    if not requests:
        raise InvalidArgumentError("missions", "is empty; a batch needs at least one mission")
    if len(requests) > limits.max_batch_missions:
        raise InvalidArgumentError(
            "missions",
            f"has {len(requests)} missions; the limit is {limits.max_batch_missions} {_limit('max_batch_missions')}",
        )


def validate_submission(request: mission_service_pb2.SubmitMissionRequest, limits: Limits) -> None:
    """Raise InvalidArgumentError for the first field of ``request`` that breaks a rule."""
    _check_type("type", request.type, limits)
    size = request.payload.ByteSize()
    if size > limits.max_payload_bytes:
        raise InvalidArgumentError(
            "payload",
            f"is {size} bytes serialized; the limit is {limits.max_payload_bytes} bytes {_limit('max_payload_bytes')}",
        )
    if _depth(request.payload) > limits.max_payload_depth:
        raise InvalidArgumentError(
            "payload", f"nests deeper than {limits.max_payload_depth} levels {_limit('max_payload_depth')}"
        )
    if request.priority not in mission_pb2.Priority.values():
        raise InvalidArgumentError("priority", f"unknown value {request.priority}")
    if request.max_attempts < 0 or request.max_attempts > limits.max_max_attempts:
        raise InvalidArgumentError(
            "max_attempts",
            f"must be between 0 (default) and {limits.max_max_attempts} {_limit('max_max_attempts')},"
            f" got {request.max_attempts}",
        )
    _check_timeout(request, limits)
    _check_length(
        "idempotency_key", request.idempotency_key, limits.max_idempotency_key_length, "max_idempotency_key_length"
    )
    _check_labels(request.labels, limits)


def _check_length(field: str, value: str, limit: int, name: str) -> None:
    if len(value) > limit:
        raise InvalidArgumentError(field, f"is longer than {limit} characters {_limit(name)}")


def _check_timeout(request: mission_service_pb2.SubmitMissionRequest, limits: Limits) -> None:
    try:
        timeout = request.timeout.ToTimedelta()
    except OverflowError:  # seconds beyond what a timedelta holds: certainly too long
        timeout = timedelta.max
    if timeout < timedelta(0) or timeout > limits.max_timeout:
        raise InvalidArgumentError(
            "timeout",
            f"must be between 0 (default) and {limits.max_timeout.total_seconds():.0f} s {_limit('max_timeout')},"
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


def _check_label(field: str, key: str, value: str, limits: Limits) -> None:
    if not key or len(key) > limits.max_label_key_length:
        raise InvalidArgumentError(
            field,
            f"key {key[:70]!r} must be 1..{limits.max_label_key_length} characters {_limit('max_label_key_length')}",
        )
    if len(value) > limits.max_label_value_length:
        raise InvalidArgumentError(
            f"{field}[{key}]",
            f"value is longer than {limits.max_label_value_length} characters {_limit('max_label_value_length')}",
        )


def _check_labels(labels: Mapping[str, str], limits: Limits) -> None:
    if len(labels) > limits.max_labels:
        raise InvalidArgumentError(
            "labels", f"has {len(labels)} entries; the limit is {limits.max_labels} {_limit('max_labels')}"
        )
    for key, value in labels.items():
        _check_label("labels", key, value, limits)


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


def page_size(requested: int, limits: Limits) -> int:
    """The page size to serve: 0 means the default, and anything above the limit is lowered to it."""
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
            "mission_ids",
            f"has {len(request.mission_ids)} ids; the limit is {limits.max_watch_mission_ids}"
            f" {_limit('max_watch_mission_ids')}",
        )
    for mission_id in request.mission_ids:
        validate_mission_id(mission_id, limits, "mission_ids")
    if len(request.mission_types) > limits.max_watch_mission_types:
        raise InvalidArgumentError(
            "mission_types",
            f"has {len(request.mission_types)} entries; the limit is {limits.max_watch_mission_types}"
            f" {_limit('max_watch_mission_types')}",
        )
    for mission_type in request.mission_types:
        _check_type("mission_types", mission_type, limits)
    parse_label_selector(request.label_selector, limits)
    for event_type in request.types:
        if event_type not in events_pb2.EventType.values() or event_type == events_pb2.EVENT_TYPE_UNSPECIFIED:
            raise InvalidArgumentError("types", f"unknown event type {event_type}")


def parse_label_selector(selector: str, limits: Limits) -> tuple[tuple[str, str], ...]:
    """``"k=v,k2=v2"`` as sorted (key, value) pairs; empty for an empty selector."""
    if not selector.strip():
        return ()
    # Counted before splitting, so a hostile selector is refused without building its pairs.
    count = selector.count(",") + 1
    if count > limits.max_label_selector_pairs:
        raise InvalidArgumentError(
            "label_selector",
            f"has {count} pairs; the limit is {limits.max_label_selector_pairs} {_limit('max_label_selector_pairs')}",
        )
    pairs = []
    for part in selector.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError("label_selector", f"{part.strip()[:70]!r} is not key=value")
        pairs.append((key.strip(), value.strip()))
        _check_label("label_selector", *pairs[-1], limits)
    return tuple(sorted(dict(pairs).items()))


class _Malformed:
    """Stands in for a request body that does not parse, until the handler can refuse it."""

    __slots__ = ("error",)

    def __init__(self, error: DecodeError) -> None:
        self.error = error


async def _refuse_malformed(request: object, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, _Malformed):
        # The parser's words only (never the client's bytes): they name the message type.
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: {request.error}")


class RejectMalformedRequests(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Answers a request body that does not parse with INVALID_ARGUMENT.

    Left to grpcio, a parse failure (random bytes, a message nested deeper than the
    protobuf parser's recursion limit) is UNKNOWN, with a traceback in the log.
    Requests of client-streaming methods are left alone (this service has none).
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        kind = "unary_stream" if handler.response_streaming else "unary_unary"
        behavior = getattr(handler, kind)
        if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
            return handler
        return handler._replace(
            request_deserializer=_tolerant(handler.request_deserializer), **{kind: _guarded(behavior)}
        )


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except DecodeError as exc:
            return _Malformed(exc)

    return parse


def _guarded(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await _refuse_malformed(request, context)
            async for item in behavior(request, context):
                yield item

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _refuse_malformed(request, context)
        return await behavior(request, context)

    return unary
