"""MissionEvent <-> AMQP message: the only place that knows the wire format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aio_pika
from google.protobuf.message import DecodeError as ProtobufDecodeError

from missions.errors import DecodeError
from missions.v1 import events_pb2

__all__ = ["CONTENT_TYPE", "SCHEMA_VERSION", "decode", "encode", "stream_offset"]

CONTENT_TYPE = "application/x-protobuf"
MESSAGE_TYPE = "missions.v1.MissionEvent"
SCHEMA_HEADER = "x-missions-schema"
SCHEMA_VERSION = 1
STREAM_OFFSET_HEADER = "x-stream-offset"


def encode(event: events_pb2.MissionEvent, priority: int | None = None) -> aio_pika.Message:
    """A persistent AMQP message carrying ``event``; ``priority`` orders the work queue."""
    return aio_pika.Message(
        body=event.SerializeToString(),
        content_type=CONTENT_TYPE,
        type=MESSAGE_TYPE,
        message_id=event.id,
        correlation_id=event.correlation_id or None,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=priority,
        headers={SCHEMA_HEADER: SCHEMA_VERSION},
    )


def decode(body: bytes, headers: Mapping[str, Any] | None, message_type: str | None) -> events_pb2.MissionEvent:
    """Parse a message body, rejecting anything that is not a known MissionEvent schema."""
    if message_type != MESSAGE_TYPE:
        raise DecodeError(f"unexpected message type {message_type!r}")
    schema = (headers or {}).get(SCHEMA_HEADER)
    if schema != SCHEMA_VERSION:
        raise DecodeError(f"unknown schema version {schema!r}")
    event = events_pb2.MissionEvent()
    try:
        event.ParseFromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"malformed MissionEvent: {exc}") from exc
    if not event.id or not event.mission_id or event.WhichOneof("details") is None:
        raise DecodeError("MissionEvent lacks id, mission_id or details")
    return event


def stream_offset(headers: Mapping[str, Any] | None) -> int:
    """The log offset RabbitMQ attaches to every message delivered from a stream."""
    offset = (headers or {}).get(STREAM_OFFSET_HEADER)
    if not isinstance(offset, int):
        raise DecodeError(f"stream delivery without an integer {STREAM_OFFSET_HEADER} header")
    return offset
