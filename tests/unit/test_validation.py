"""Request validation: every rule names the field it enforces."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from mission_service import paging, validation
from mission_service.labels import parse_label_selector
from mission_service.limits import Limits, limit_flag
from missions.errors import InvalidArgumentError
from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.unit.factories import struct

LIMITS = Limits()


def _nested(levels: int) -> struct_pb2.Struct:
    """A payload of ``levels`` dicts nested in each other, the innermost holding a number."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return struct(**value) if isinstance(value, dict) else struct()


def _valid(**fields: Any) -> pb.SubmitMissionRequest:
    request = pb.SubmitMissionRequest(type="echo", payload=struct(text="hi"), labels={"team": "ops"})
    for name, value in fields.items():
        if isinstance(value, struct_pb2.Struct | duration_pb2.Duration | timestamp_pb2.Timestamp):
            getattr(request, name).CopyFrom(value)
        elif name == "labels":
            request.labels.clear()
            request.labels.update(value)
        else:
            setattr(request, name, value)
    return request


def _field_of(check: Callable[[], object]) -> str:
    with pytest.raises(InvalidArgumentError) as raised:
        check()
    return raised.value.field


def test_a_valid_request_passes() -> None:
    validation.validate_submission(_valid(), LIMITS)


@pytest.mark.parametrize("mission_type", ["a", "echo", "Report_v2", "billing.invoice:send-all", "x" * 128])
def test_accepted_types(mission_type: str) -> None:
    validation.validate_submission(_valid(type=mission_type), LIMITS)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": ""}, "type"),
        ({"type": "1echo"}, "type"),
        ({"type": "_echo"}, "type"),
        ({"type": "echo bravo"}, "type"),
        ({"type": "echo/x"}, "type"),
        ({"type": "echo.#"}, "type"),
        ({"type": "é"}, "type"),
        ({"type": "x" * 129}, "type"),
        ({"payload": struct(blob="x" * (256 * 1024))}, "payload"),
        ({"payload": _nested(40)}, "payload"),
        ({"priority": 99}, "priority"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"timeout": duration_pb2.Duration(seconds=-1)}, "timeout"),
        ({"timeout": duration_pb2.Duration(seconds=2 * 86_400)}, "timeout"),
        ({"idempotency_key": "k" * 257}, "idempotency_key"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
        ({"labels": {"": "v"}}, "labels"),
        ({"labels": {"k" * 64: "v"}}, "labels"),
        ({"labels": {"team": "v" * 257}}, "labels[team]"),
    ],
)
def test_each_rule_names_its_field(fields: dict[str, Any], field: str) -> None:
    assert _field_of(lambda: validation.validate_submission(_valid(**fields), LIMITS)) == field


@pytest.mark.parametrize(
    "fields",
    [
        {"max_attempts": 0},
        {"max_attempts": 100},
        {"timeout": duration_pb2.Duration(seconds=0)},
        {"timeout": duration_pb2.Duration(seconds=86_400)},
        {"idempotency_key": "k" * 256},
        {"labels": {f"k{i}": "v" * 256 for i in range(64)}},
        {"labels": {"k" * 63: "v"}},
        {"payload": _nested(10)},
        {"priority": mission_pb2.PRIORITY_CRITICAL},
    ],
)
def test_values_at_the_limits_pass(fields: dict[str, Any]) -> None:
    validation.validate_submission(_valid(**fields), LIMITS)


def test_payload_size_limit_counts_serialized_bytes() -> None:
    payload = struct(blob="x" * 1000)
    size = payload.ByteSize()
    validation.validate_submission(_valid(payload=payload), Limits(max_payload_bytes=size))
    error = _field_of(
        lambda: validation.validate_submission(_valid(payload=payload), Limits(max_payload_bytes=size - 1))
    )
    assert error == "payload"


def test_payload_depth_counts_nested_lists_too() -> None:
    value: Any = 1
    for _ in range(40):
        value = [value]
    payload = struct(deep=value)
    assert _field_of(lambda: validation.validate_submission(_valid(payload=payload), LIMITS)) == "payload"


def test_the_message_names_the_limit() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        validation.validate_submission(_valid(max_attempts=101), LIMITS)
    assert "100" in raised.value.description
    assert str(raised.value).startswith("max_attempts: ")


def test_the_first_broken_rule_is_reported() -> None:
    request = _valid(type="", max_attempts=-1)
    assert _field_of(lambda: validation.validate_submission(request, LIMITS)) == "type"


def test_page_size_defaults_caps_and_rejects_negative() -> None:
    assert paging.page_size(0, LIMITS) == 100
    assert paging.page_size(7, LIMITS) == 7
    assert paging.page_size(1000, LIMITS) == 1000
    assert paging.page_size(1001, LIMITS) == 1000
    assert paging.page_size(2**31 - 1, LIMITS) == 1000
    assert _field_of(lambda: paging.page_size(-1, LIMITS)) == "page_size"


STATES = [mission_pb2.MISSION_STATE_RUNNING, mission_pb2.MISSION_STATE_QUEUED]


def test_page_token_round_trips() -> None:
    token = paging.encode_page_token(42, STATES, "echo")
    assert token
    assert paging.decode_page_token(token, STATES, "echo") == 42


def test_page_token_ignores_state_order_and_repeats() -> None:
    token = paging.encode_page_token(42, STATES, "echo")
    assert paging.decode_page_token(token, [*reversed(STATES), STATES[0]], "echo") == 42


def test_empty_page_token_is_the_start() -> None:
    assert paging.decode_page_token("", STATES, "echo") == 0


@pytest.mark.parametrize(
    ("states", "mission_type"),
    [([], "echo"), (STATES, ""), (STATES, "sleep"), ([mission_pb2.MISSION_STATE_FAILED], "echo")],
)
def test_page_token_is_bound_to_its_filters(states: list[int], mission_type: str) -> None:
    token = paging.encode_page_token(42, STATES, "echo")
    assert _field_of(lambda: paging.decode_page_token(token, states, mission_type)) == "page_token"


def _token(raw: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def _digest_of_no_filter() -> str:
    raw = json.loads(base64.urlsafe_b64decode(paging.encode_page_token(0, [], "") + "=="))
    digest = raw["filter"]
    assert isinstance(digest, str)
    return digest


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!!",
        "a",
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        _token([1, 2]),
        _token("after"),
        _token({"after": 1}),
        _token({"filter": "x"}),
        _token({"after": -1, "filter": _digest_of_no_filter()}),
        _token({"after": 1.5, "filter": _digest_of_no_filter()}),
        _token({"after": "1", "filter": _digest_of_no_filter()}),
    ],
)
def test_garbage_page_tokens_are_rejected(token: str) -> None:
    assert _field_of(lambda: paging.decode_page_token(token, [], "")) == "page_token"


def test_page_token_beyond_the_sqlite_integer_range_is_rejected() -> None:
    token = _token({"after": 2**63, "filter": _digest_of_no_filter()})
    assert _field_of(lambda: paging.decode_page_token(token, [], "")) == "page_token"


def test_validate_states() -> None:
    validation.validate_states([])
    validation.validate_states([mission_pb2.MISSION_STATE_QUEUED, mission_pb2.MISSION_STATE_CANCELLED])
    assert _field_of(lambda: validation.validate_states([mission_pb2.MISSION_STATE_UNSPECIFIED])) == "states"
    unknown: list[int] = [mission_pb2.MISSION_STATE_QUEUED, 42]
    assert _field_of(lambda: validation.validate_states(unknown)) == "states"


def test_validate_watch_accepts_the_limits() -> None:
    validation.validate_watch(pb.WatchEventsRequest(), LIMITS)
    validation.validate_watch(
        pb.WatchEventsRequest(mission_ids=[f"m{i}" for i in range(1000)], types=[events_pb2.EVENT_TYPE_COMPLETED]),
        LIMITS,
    )


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.WatchEventsRequest(mission_ids=[f"m{i}" for i in range(1001)]), "mission_ids"),
        (pb.WatchEventsRequest(mission_ids=["m1", ""]), "mission_ids"),
        (pb.WatchEventsRequest(types=[events_pb2.EVENT_TYPE_UNSPECIFIED]), "types"),
        (pb.WatchEventsRequest(types=[events_pb2.EVENT_TYPE_CREATED, events_pb2.EventType.ValueType(99)]), "types"),
    ],
)
def test_validate_watch_rejects(request_: pb.WatchEventsRequest, field: str) -> None:
    assert _field_of(lambda: validation.validate_watch(request_, LIMITS)) == field


def test_limits_are_configurable() -> None:
    limits = Limits(max_type_length=4, max_labels=1, max_max_attempts=5, max_timeout=timedelta(seconds=10))
    validation.validate_submission(_valid(type="echo", labels={"a": "b"}, max_attempts=5), limits)
    assert _field_of(lambda: validation.validate_submission(_valid(type="sleep"), limits)) == "type"
    assert _field_of(lambda: validation.validate_submission(_valid(labels={"a": "1", "b": "2"}), limits)) == "labels"
    assert _field_of(lambda: validation.validate_submission(_valid(max_attempts=6), limits)) == "max_attempts"
    too_long = duration_pb2.Duration(seconds=11)
    assert _field_of(lambda: validation.validate_submission(_valid(timeout=too_long), limits)) == "timeout"


@pytest.mark.parametrize(
    ("fields", "limit"),
    [
        ({"type": "x" * 129}, "max_type_length"),
        ({"payload": struct(blob="x" * (256 * 1024))}, "max_payload_bytes"),
        ({"payload": _nested(40)}, "max_payload_depth"),
        ({"max_attempts": 101}, "max_max_attempts"),
        ({"timeout": duration_pb2.Duration(seconds=2 * 86_400)}, "max_timeout"),
        ({"idempotency_key": "k" * 257}, "max_idempotency_key_length"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "max_labels"),
        ({"labels": {"k" * 64: "v"}}, "max_label_key_length"),
        ({"labels": {"team": "v" * 257}}, "max_label_value_length"),
    ],
)
def test_a_breached_limit_is_named_with_its_flag(fields: dict[str, Any], limit: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        validation.validate_submission(_valid(**fields), LIMITS)
    assert f"({limit}, {limit_flag(limit)})" in raised.value.description


def test_a_timeout_beyond_what_a_timedelta_holds_is_refused() -> None:
    huge = duration_pb2.Duration(seconds=315_576_000_000)
    assert _field_of(lambda: validation.validate_submission(_valid(timeout=huge), LIMITS)) == "timeout"


@pytest.mark.parametrize(
    ("request_", "field", "limit"),
    [
        (pb.WatchEventsRequest(mission_ids=["m" * 129]), "mission_ids", "max_mission_id_length"),
        (
            pb.WatchEventsRequest(mission_types=[f"t{i}" for i in range(101)]),
            "mission_types",
            "max_watch_mission_types",
        ),
        (pb.WatchEventsRequest(mission_types=["t" * 129]), "mission_types", "max_type_length"),
        (pb.WatchEventsRequest(label_selector="k" * 64 + "=v"), "label_selector", "max_label_key_length"),
        (pb.WatchEventsRequest(label_selector="k=" + "v" * 257), "label_selector[k]", "max_label_value_length"),
        (pb.WatchEventsRequest(label_selector="a=b," * 16 + "c=d"), "label_selector", "max_label_selector_pairs"),
    ],
)
def test_validate_watch_names_each_limit(request_: pb.WatchEventsRequest, field: str, limit: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        validation.validate_watch(request_, LIMITS)
    assert raised.value.field == field
    assert limit_flag(limit) in raised.value.description


@pytest.mark.parametrize("mission_type", ["", "echo bravo", "echo.#"])
def test_validate_watch_checks_each_mission_type_like_a_submission(mission_type: str) -> None:
    request = pb.WatchEventsRequest(mission_types=["echo", mission_type])
    assert _field_of(lambda: validation.validate_watch(request, LIMITS)) == "mission_types"


def test_a_huge_label_selector_is_refused_by_its_pair_count() -> None:
    selector = "k=v," * 1_000_000
    with pytest.raises(InvalidArgumentError, match="has 1000001 pairs"):
        parse_label_selector(selector, LIMITS)


def test_validate_mission_id() -> None:
    validation.validate_mission_id("m" * 128, LIMITS)
    assert _field_of(lambda: validation.validate_mission_id("", LIMITS)) == "mission_id"
    assert _field_of(lambda: validation.validate_mission_id("m" * 129, LIMITS)) == "mission_id"


@pytest.mark.parametrize(
    ("order_by", "newest"),
    [
        ("", False),
        ("create_time", False),
        ("  create_time ", False),
        ("create_time desc", True),
        ("create_time\tdesc", True),
    ],
)
def test_list_orders(order_by: str, newest: bool) -> None:
    assert validation.newest_first(order_by) is newest


@pytest.mark.parametrize("order_by", ["create_time asc", "CREATE_TIME DESC", "desc", "create_time desc, id", "newest"])
def test_an_unknown_list_order_is_refused(order_by: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        validation.newest_first(order_by)
    assert raised.value.field == "order_by"


_CREATED = timestamp_pb2.Timestamp(seconds=1_800_000_000, nanos=5)
_DAY = 86_400


def _due(**fields: Any) -> timestamp_pb2.Timestamp | None:
    return validation.due_time(_valid(**fields), _CREATED, LIMITS)


def test_the_due_time_is_the_later_of_due_time_and_creation_plus_delay() -> None:
    assert _due() is None
    assert _due(delay=duration_pb2.Duration(seconds=30)) == timestamp_pb2.Timestamp(seconds=1_800_000_030, nanos=5)
    at = timestamp_pb2.Timestamp(seconds=1_800_000_100)
    assert _due(due_time=at) == at
    assert _due(due_time=at, delay=duration_pb2.Duration(seconds=30)) == at
    later = duration_pb2.Duration(seconds=200)
    assert _due(due_time=at, delay=later) == timestamp_pb2.Timestamp(seconds=1_800_000_200, nanos=5)


def test_a_due_time_in_the_past_is_kept_as_asked() -> None:
    past = timestamp_pb2.Timestamp(seconds=1_000)
    assert _due(due_time=past) == past
    assert _due(delay=duration_pb2.Duration()) == _CREATED


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"delay": duration_pb2.Duration(seconds=-1)}, "delay"),
        ({"delay": duration_pb2.Duration(seconds=366 * _DAY)}, "delay"),
        ({"due_time": timestamp_pb2.Timestamp(seconds=_CREATED.seconds + 2 * 365 * _DAY)}, "due_time"),
        ({"due_time": timestamp_pb2.Timestamp(seconds=_CREATED.seconds, nanos=-1)}, "due_time"),
        ({"due_time": timestamp_pb2.Timestamp(seconds=2**62)}, "due_time"),
        # The later of the two names the field that breaks the limit.
        ({"due_time": timestamp_pb2.Timestamp(seconds=1), "delay": duration_pb2.Duration(seconds=400 * _DAY)}, "delay"),
    ],
)
def test_a_bad_due_time_or_delay_is_refused_naming_the_field(fields: dict[str, Any], field: str) -> None:
    assert _field_of(lambda: _due(**fields)) == field


def test_the_longest_delay_is_a_limit_named_with_its_flag() -> None:
    limits = Limits(max_delay=timedelta(seconds=60))
    assert validation.due_time(_valid(delay=duration_pb2.Duration(seconds=60)), _CREATED, limits) is not None
    with pytest.raises(InvalidArgumentError) as raised:
        validation.due_time(_valid(delay=duration_pb2.Duration(seconds=61)), _CREATED, limits)
    assert "(max_delay, --max-delay)" in raised.value.description
