"""The wire format: MissionEvent <-> AMQP message."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from hypothesis import given
from hypothesis import strategies as st

from missions import codec
from missions.errors import DecodeError
from missions.v1 import events_pb2, mission_pb2
from tests.unit.factories import EventLog, struct


@pytest.fixture
def event() -> events_pb2.MissionEvent:
    log = EventLog()
    created = log.created("m1", "echo", payload=struct(text="hi", n=3))
    created.meta["origin"] = "tests"
    return created


def _decode(message: aio_pika.Message) -> events_pb2.MissionEvent:
    return codec.decode(message.body, message.headers, message.type)


def test_round_trip(event: events_pb2.MissionEvent) -> None:
    assert _decode(codec.encode(event)) == event


def test_the_message_is_persistent_and_self_describing(event: events_pb2.MissionEvent) -> None:
    message = codec.encode(event, priority=mission_pb2.PRIORITY_HIGH)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/x-protobuf"
    assert message.type == "missions.v1.MissionEvent"
    assert message.message_id == event.id
    assert message.correlation_id == event.correlation_id
    assert message.priority == mission_pb2.PRIORITY_HIGH
    assert message.headers == {
        "x-missions-schema": codec.SCHEMA_VERSION,
        "x-missions-mission-id": "m1",
        "x-missions-mission-type": "echo",
        "x-missions-generation": 0,
        "x-missions-attempt": 0,
    }


def test_an_empty_correlation_id_is_left_out(event: events_pb2.MissionEvent) -> None:
    event.correlation_id = ""
    message = codec.encode(event)
    assert message.correlation_id is None
    assert _decode(message).correlation_id == ""


@pytest.mark.parametrize("message_type", [None, "", "missions.v1.Mission", "missions.v2.MissionEvent"])
def test_wrong_message_type(event: events_pb2.MissionEvent, message_type: str | None) -> None:
    message = codec.encode(event)
    with pytest.raises(DecodeError, match="message type"):
        codec.decode(message.body, message.headers, message_type)


@pytest.mark.parametrize("headers", [None, {}, {"x-missions-schema": 2}, {"x-missions-schema": "1"}])
def test_unknown_schema(event: events_pb2.MissionEvent, headers: dict[str, Any] | None) -> None:
    message = codec.encode(event)
    with pytest.raises(DecodeError, match="schema"):
        codec.decode(message.body, headers, message.type)


@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x0f"])
def test_garbage_bytes(event: events_pb2.MissionEvent, body: bytes) -> None:
    message = codec.encode(event)
    with pytest.raises(DecodeError, match="malformed"):
        codec.decode(body, message.headers, message.type)


@pytest.mark.parametrize("missing", ["id", "mission_id", "details"])
def test_an_event_missing_its_identity_or_details(event: events_pb2.MissionEvent, missing: str) -> None:
    if missing == "details":
        event.ClearField("created")
    else:
        setattr(event, missing, "")
    message = codec.encode(event)
    with pytest.raises(DecodeError, match="lacks"):
        _decode(message)


def test_an_empty_body_is_rejected(event: events_pb2.MissionEvent) -> None:
    message = codec.encode(event)
    with pytest.raises(DecodeError):
        codec.decode(b"", message.headers, message.type)


def test_stream_offset() -> None:
    assert codec.stream_offset({"x-stream-offset": 0}) == 0
    assert codec.stream_offset({"x-stream-offset": 41, "other": "x"}) == 41


@pytest.mark.parametrize("headers", [None, {}, {"x-stream-offset": "41"}, {"x-stream-offset": 4.5}])
def test_stream_offset_missing_or_not_an_integer(headers: dict[str, Any] | None) -> None:
    with pytest.raises(DecodeError, match="x-stream-offset"):
        codec.stream_offset(headers)


def test_a_message_tells_its_mission_without_decoding_the_body(event: events_pb2.MissionEvent) -> None:
    event.generation, event.attempt = 2, 3
    message = codec.encode(event)
    assert codec.identity(message.headers) == codec.Identity("m1", "echo", 2, 3)


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"x-missions-mission-id": "", "x-missions-generation": 0, "x-missions-attempt": 0},
        {"x-missions-mission-id": "m" * 129, "x-missions-generation": 0, "x-missions-attempt": 0},
        {"x-missions-mission-id": b"m1", "x-missions-generation": 0, "x-missions-attempt": 0},
        {"x-missions-mission-id": "m1", "x-missions-attempt": 0},
        {"x-missions-mission-id": "m1", "x-missions-generation": -1, "x-missions-attempt": 0},
        {"x-missions-mission-id": "m1", "x-missions-generation": 0, "x-missions-attempt": "1"},
        {"x-missions-mission-id": "m1", "x-missions-generation": 0, "x-missions-attempt": True},
        {"x-missions-mission-id": "m1", "x-missions-generation": 0, "x-missions-attempt": 2**31 - 1},
    ],
)
def test_headers_that_do_not_name_a_mission(headers: dict[str, Any] | None) -> None:
    assert codec.identity(headers) is None


@pytest.mark.parametrize("mission_type", ["é", "t" * 129, 7])
def test_a_mission_type_unfit_for_a_routing_key_is_dropped(mission_type: object) -> None:
    headers = {
        "x-missions-mission-id": "m1",
        "x-missions-mission-type": mission_type,
        "x-missions-generation": 0,
        "x-missions-attempt": 0,
    }
    assert codec.identity(headers) == codec.Identity("m1", "", 0, 0)


def test_error_messages_cut_hostile_header_values_short(event: events_pb2.MissionEvent) -> None:
    with pytest.raises(DecodeError) as raised:
        codec.decode(b"", {"x-missions-schema": "v" * 10_000}, codec.MESSAGE_TYPE)
    assert len(str(raised.value)) < 120


def test_a_dead_letter_copy_keeps_the_message_and_says_why(event: events_pb2.MissionEvent) -> None:
    original = codec.encode(event)
    incoming = MagicMock(spec=AbstractIncomingMessage)
    for name in (
        "body",
        "content_type",
        "content_encoding",
        "type",
        "message_id",
        "correlation_id",
        "timestamp",
        "priority",
    ):
        setattr(incoming, name, getattr(original, name))
    incoming.headers = original.headers
    copy = codec.dead_letter_copy(incoming, "unknown schema version 2", "worker-1")
    assert copy.body == original.body
    assert (copy.type, copy.message_id, copy.correlation_id) == (original.type, event.id, event.correlation_id)
    assert copy.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert copy.headers == {
        **original.headers,
        codec.DEAD_LETTER_REASON_HEADER: "unknown schema version 2",
        "x-missions-dead-lettered-by": "worker-1",
    }


@pytest.mark.parametrize("event_type", [events_pb2.EVENT_TYPE_UNSPECIFIED, events_pb2.EVENT_TYPE_STARTED, 128])
def test_an_event_whose_type_does_not_match_its_details(event: events_pb2.MissionEvent, event_type: int) -> None:
    event.type = events_pb2.EventType.ValueType(event_type)
    with pytest.raises(DecodeError, match="does not match"):
        _decode(codec.encode(event))


def test_a_batch_record_round_trips_its_events_in_order() -> None:
    log = EventLog()
    events = [log.created(f"m{n}", "echo") for n in range(5)]
    message = codec.encode_batch(events)
    assert message.type == "missions.v1.EventBatch"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.headers == {codec.SCHEMA_HEADER: codec.SCHEMA_VERSION}  # nothing about one event
    assert codec.decode_record(message.body, message.headers, message.type) == events


def test_a_single_event_record_decodes_as_a_list_of_one(event: events_pb2.MissionEvent) -> None:
    message = codec.encode(event)
    assert codec.decode_record(message.body, message.headers, message.type) == [event]


def test_a_batch_with_one_bad_event_is_rejected_whole() -> None:
    log = EventLog()
    events = [log.created("m1", "echo"), log.started("m1")]
    events[1].ClearField("id")
    message = codec.encode_batch(events)
    with pytest.raises(DecodeError, match="lacks id"):
        codec.decode_record(message.body, message.headers, message.type)


def _oversized_batch() -> bytes:
    log = EventLog()
    events = [log.created(f"m{n}", "echo") for n in range(codec.SEQUENCES_PER_RECORD + 1)]
    return events_pb2.EventBatch(events=events).SerializeToString()


@pytest.mark.parametrize("body", [b"", b"\xff\xff", _oversized_batch()], ids=["empty", "malformed", "oversized"])
def test_an_empty_malformed_or_oversized_batch_is_rejected(body: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode_record(body, {codec.SCHEMA_HEADER: codec.SCHEMA_VERSION}, codec.BATCH_MESSAGE_TYPE)


def test_a_batch_needs_the_schema_header() -> None:
    log = EventLog()
    message = codec.encode_batch([log.created("m1", "echo"), log.started("m1")])
    with pytest.raises(DecodeError, match="schema"):
        codec.decode_record(message.body, {}, message.type)


@pytest.mark.parametrize("count", [0, 1, codec.SEQUENCES_PER_RECORD + 1])
def test_a_batch_holds_two_to_the_record_limit(count: int) -> None:
    log = EventLog()
    with pytest.raises(ValueError, match="batch record holds"):
        codec.encode_batch([log.created(f"m{n}", "echo") for n in range(count)])


@given(
    st.tuples(st.integers(0, 2**40), st.integers(0, codec.SEQUENCES_PER_RECORD - 1)),
    st.tuples(st.integers(0, 2**40), st.integers(0, codec.SEQUENCES_PER_RECORD - 1)),
)
def test_sequences_follow_the_order_of_records_then_of_events_in_them(
    first: tuple[int, int], second: tuple[int, int]
) -> None:
    assert codec.sequence_at(*first) >= codec.SEQUENCES_PER_RECORD
    assert (codec.sequence_at(*first) < codec.sequence_at(*second)) == (first < second)


@given(st.integers(0, 2**40), st.integers(0, codec.SEQUENCES_PER_RECORD - 1))
def test_a_reader_after_a_sequence_starts_at_the_record_that_can_hold_what_follows(offset: int, index: int) -> None:
    sequence = codec.sequence_at(offset, index)
    last = index == codec.SEQUENCES_PER_RECORD - 1
    assert codec.offset_after(sequence) == (offset + 1 if last else offset)
    assert codec.next_record_start(sequence) == codec.sequence_at(offset + 1)
    # Just before a record is just after the last event the previous one can hold.
    assert codec.offset_after(codec.sequence_at(offset) - 1) == offset


def test_the_positions_before_the_log_read_it_from_the_start() -> None:
    assert codec.offset_after(0) == 0
    assert codec.next_record_start(0) == codec.sequence_at(0)
