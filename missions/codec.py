"""MissionEvent <-> AMQP message: the only place that knows the wire format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from google.protobuf.message import DecodeError as ProtobufDecodeError

from missions import tracing
from missions.errors import DecodeError
from missions.events import is_schedule_event
from missions.topology import MISSION_TYPE_HEADER
from missions.v1 import events_pb2

__all__ = [
    "CONTENT_TYPE",
    "DEAD_LETTER_REASON_HEADER",
    "INT32_MAX",
    "SCHEMA_VERSION",
    "Identity",
    "dead_letter_copy",
    "decode",
    "decode_record",
    "encode",
    "encode_batch",
    "identity",
    "next_record_start",
    "offset_after",
    "persistent_copy",
    "sequence_at",
    "stream_offset",
]

CONTENT_TYPE = "application/x-protobuf"
MESSAGE_TYPE = "missions.v1.MissionEvent"
BATCH_MESSAGE_TYPE = "missions.v1.EventBatch"
# A log record holds at most this many events: the event at ``index`` in the record at
# stream offset ``offset`` has sequence (offset + 1) * SEQUENCES_PER_RECORD + index. Fixed
# for good: every reader derives the same sequences from it, and clients keep them.
SEQUENCES_PER_RECORD = 1000
SCHEMA_HEADER = "x-missions-schema"
SCHEMA_VERSION = 1
STREAM_OFFSET_HEADER = "x-stream-offset"
# Who the event is about, readable without decoding the body (identity()).
MISSION_ID_HEADER = "x-missions-mission-id"
GENERATION_HEADER = "x-missions-generation"
ATTEMPT_HEADER = "x-missions-attempt"
# Set on the copy of a message that was dead-lettered because it could not be decoded.
DEAD_LETTER_REASON_HEADER = "x-missions-dead-letter-reason"
DEAD_LETTERED_BY_HEADER = "x-missions-dead-lettered-by"

# The details field each event type sets: EVENT_TYPE_CREATED -> "created".
_DETAILS = {
    value: name.removeprefix("EVENT_TYPE_").lower()
    for name, value in events_pb2.EventType.items()
    if value != events_pb2.EVENT_TYPE_UNSPECIFIED
}
_MAX_ID_LENGTH = 128
# The largest value of a proto int32 field (attempt, redrive_count).
INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Identity:
    """The mission an event belongs to, as its message headers state it."""

    mission_id: str
    mission_type: str
    generation: int
    attempt: int


def encode(event: events_pb2.MissionEvent, priority: int | None = None) -> aio_pika.Message:
    """A persistent AMQP message carrying ``event``; ``priority`` orders the work queue.

    With tracing on, its headers also carry the current span's W3C trace context
    (``traceparent``, ``tracestate``), so whoever handles the message continues the trace.
    """
    headers: dict[str, Any] = {
        SCHEMA_HEADER: SCHEMA_VERSION,
        MISSION_ID_HEADER: event.mission_id,
        MISSION_TYPE_HEADER: event.mission_type,
        GENERATION_HEADER: event.generation,
        ATTEMPT_HEADER: event.attempt,
    }
    if tracing.propagating:
        tracing.inject(headers)
    return aio_pika.Message(
        body=event.SerializeToString(),
        content_type=CONTENT_TYPE,
        type=MESSAGE_TYPE,
        message_id=event.id,
        correlation_id=event.correlation_id or None,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=priority,
        headers=headers,
    )


def encode_batch(events: Sequence[events_pb2.MissionEvent]) -> aio_pika.Message:
    """A persistent AMQP message carrying several events, for the log (an EventBatch record).

    It has no identity or trace headers: those describe one event.
    """
    if not 1 < len(events) <= SEQUENCES_PER_RECORD:
        raise ValueError(f"a batch record holds 2 to {SEQUENCES_PER_RECORD} events, not {len(events)}")
    return aio_pika.Message(
        body=events_pb2.EventBatch(events=events).SerializeToString(),
        content_type=CONTENT_TYPE,
        type=BATCH_MESSAGE_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={SCHEMA_HEADER: SCHEMA_VERSION},
    )


def decode(body: bytes, headers: Mapping[str, Any] | None, message_type: str | None) -> events_pb2.MissionEvent:
    """Parse a message body, rejecting anything that is not a known MissionEvent schema."""
    if message_type != MESSAGE_TYPE:
        raise DecodeError(f"unexpected message type {_shown(message_type)}")
    _check_schema(headers)
    event = _parsed(events_pb2.MissionEvent(), body)
    _check(event)
    return event


def decode_record(
    body: bytes, headers: Mapping[str, Any] | None, message_type: str | None
) -> list[events_pb2.MissionEvent]:
    """The events of a log or control stream record, a MissionEvent or an EventBatch, in order.

    A batch is rejected whole if any of its events is.
    """
    if message_type != BATCH_MESSAGE_TYPE:
        return [decode(body, headers, message_type)]
    _check_schema(headers)
    batch = _parsed(events_pb2.EventBatch(), body)
    if not 0 < len(batch.events) <= SEQUENCES_PER_RECORD:
        raise DecodeError(f"an EventBatch of {len(batch.events)} events")
    for event in batch.events:
        _check(event)
    return list(batch.events)


_Parsed = TypeVar("_Parsed", events_pb2.MissionEvent, events_pb2.EventBatch)


def _parsed(message: _Parsed, body: bytes) -> _Parsed:
    """``message`` parsed from ``body``; DecodeError naming its type if the bytes are not one."""
    try:
        message.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"malformed {message.DESCRIPTOR.name}: {exc}") from exc
    return message


def _check_schema(headers: Mapping[str, Any] | None) -> None:
    schema = (headers or {}).get(SCHEMA_HEADER)
    if schema != SCHEMA_VERSION:
        raise DecodeError(f"unknown schema version {_shown(schema)}")


def _check(event: events_pb2.MissionEvent) -> None:
    # A schedule's events name the schedule, not a mission.
    owner = event.schedule_id if is_schedule_event(event) else event.mission_id
    if not event.id or not owner or event.WhichOneof("details") is None:
        raise DecodeError("MissionEvent lacks id, mission_id (schedule_id in a schedule's event) or details")
    if _DETAILS.get(event.type) != event.WhichOneof("details"):
        raise DecodeError(f"event type {event.type} does not match its details")


def sequence_at(offset: int, index: int = 0) -> int:
    """The sequence of the event at ``index`` in the log record at stream ``offset``."""
    return (offset + 1) * SEQUENCES_PER_RECORD + index


def offset_after(sequence: int) -> int:
    """The stream offset of the first record that can hold an event after ``sequence``: that
    of ``sequence`` itself, or of the next record if ``sequence`` is the last a record can hold."""
    return max(0, (sequence + 1) // SEQUENCES_PER_RECORD - 1)


def next_record_start(sequence: int) -> int:
    """The sequence of the first event of the record after the one that holds ``sequence``
    (of the log's first record, for a position before the log)."""
    return sequence_at(sequence // SEQUENCES_PER_RECORD)


def stream_offset(headers: Mapping[str, Any] | None) -> int:
    """The log offset RabbitMQ attaches to every message delivered from a stream."""
    offset = (headers or {}).get(STREAM_OFFSET_HEADER)
    if not isinstance(offset, int):
        raise DecodeError(f"stream delivery without an integer {STREAM_OFFSET_HEADER} header")
    return offset


def identity(headers: Mapping[str, Any] | None) -> Identity | None:
    """The mission a message claims to belong to, from its headers; None when they do not say.

    For a message whose body cannot be decoded: its mission can still be told so.
    """
    headers = headers or {}
    mission_id, mission_type = headers.get(MISSION_ID_HEADER), headers.get(MISSION_TYPE_HEADER, "")
    generation, attempt = headers.get(GENERATION_HEADER), headers.get(ATTEMPT_HEADER)
    if not isinstance(mission_id, str) or not 0 < len(mission_id) <= _MAX_ID_LENGTH:
        return None
    # It becomes part of a routing key: plain ASCII of bounded length, or nothing.
    if not isinstance(mission_type, str) or len(mission_type) > _MAX_ID_LENGTH or not mission_type.isascii():
        mission_type = ""
    if _is_count(generation) and _is_count(attempt):
        return Identity(mission_id, mission_type, generation, attempt)
    return None


def persistent_copy(
    message: AbstractIncomingMessage, extra_headers: Mapping[str, Any] | None = None
) -> aio_pika.Message:
    """A persistent copy of ``message``, priority included, with ``extra_headers`` added."""
    return aio_pika.Message(
        body=message.body,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        type=message.type,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        priority=message.priority,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={**(message.headers or {}), **(extra_headers or {})},
    )


def dead_letter_copy(message: AbstractIncomingMessage, reason: str, dead_lettered_by: str) -> aio_pika.Message:
    """A persistent copy of ``message`` with headers saying why and by whom it was dead-lettered."""
    return persistent_copy(message, {DEAD_LETTER_REASON_HEADER: reason, DEAD_LETTERED_BY_HEADER: dead_lettered_by})


def _is_count(value: object) -> TypeGuard[int]:
    # Below the int32 maximum: the attempt after it must still fit.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < INT32_MAX


def _shown(value: object) -> str:
    """A header value in an error message, cut short: it comes from whoever published."""
    text = repr(value)
    return text if len(text) <= 64 else f"{text[:61]}..."
