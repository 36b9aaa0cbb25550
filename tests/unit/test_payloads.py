"""Declared payload shapes: what each annotation accepts, the messages for what it refuses, and registration."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from missions.errors import InvalidPayload, NonRetryableError
from worker_service.handlers import HandlerRegistry, handler
from worker_service.handlers.payloads import payload_parser


def _parse(annotation: Any, value: Any) -> Any:
    """``value`` as the field ``value`` of a one-field dataclass annotated ``annotation``."""
    shape = dataclasses.make_dataclass("Shape", [("value", annotation)])
    return payload_parser(shape)({"value": value}).value


def _refusal(annotation: Any, value: Any) -> str:
    with pytest.raises(InvalidPayload) as caught:
        _parse(annotation, value)
    return str(caught.value)


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (str, "text", "text"),
        (int, 3, 3),
        (int, 3.0, 3),  # a Struct carries every number as a float
        (int, -(2**40), -(2**40)),
        (float, 2, 2.0),
        (float, 2.5, 2.5),
        (bool, False, False),
        (None, None, None),
        (int | None, None, None),
        (int | None, 4.0, 4),
        (Optional[str], "x", "x"),  # noqa: UP045 - the older spelling must work too
        (list[int], [1.0, 2.0], [1, 2]),
        (list, [1.0, "a"], [1.0, "a"]),
        (list[None], [None], [None]),
        (dict[str, float], {"a": 1}, {"a": 1.0}),
        (dict, {"a": [None]}, {"a": [None]}),
        (Literal["fit", "fill"], "fill", "fill"),
        (Literal["auto", 0], 0.0, 0),
        (Any, {"deep": [1.5, True]}, {"deep": [1.5, True]}),
    ],
)
def test_a_value_that_fits_is_converted(annotation: Any, value: Any, expected: Any) -> None:
    result = _parse(annotation, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("annotation", "value", "message"),
    [
        (str, 3.0, "payload.value: expected a string, got 3"),
        (int, 2.5, "payload.value: expected an integer, got 2.5"),
        (int, True, "payload.value: expected an integer, got true"),
        (int, "3", "payload.value: expected an integer, got '3'"),
        (float, "abc", "payload.value: expected a number, got 'abc'"),
        (float, False, "payload.value: expected a number, got false"),
        (bool, 1.0, "payload.value: expected true or false, got 1"),
        (None, 0, "payload.value: expected null, got 0"),
        (int | None, "x", "payload.value: expected an integer, got 'x'"),
        (list[int], [1, "x"], "payload.value[1]: expected an integer, got 'x'"),
        (list[int], {"a": 1}, "payload.value: expected a list, got an object"),
        (dict[str, int], {"a": "b"}, "payload.value.a: expected an integer, got 'b'"),
        (dict[str, int], [], "payload.value: expected an object, got a list"),
        (Literal["fit", "fill"], "zoom", "payload.value: expected one of 'fit', 'fill', got 'zoom'"),
        (Literal[1], True, "payload.value: expected one of 1, got true"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_naming_the_field(annotation: Any, value: Any, message: str) -> None:
    assert _refusal(annotation, value) == message


def test_a_long_value_is_shortened_in_the_message() -> None:
    message = _refusal(int, "x" * 100)
    assert message == f"payload.value: expected an integer, got '{'x' * 36}..."


@dataclass(frozen=True)
class Size:
    width: int
    height: int = 0

    def __post_init__(self) -> None:
        if self.width <= 0:
            raise InvalidPayload("width", "must be positive")


@dataclass
class Resize:
    url: str
    sizes: list[Size] = field(default_factory=list)
    quality: float | None = None
    thumbnail: Size | None = None


RESIZE = payload_parser(Resize)


def test_defaults_fill_in_missing_fields_and_nested_dataclasses_are_built() -> None:
    assert RESIZE({"url": "u"}) == Resize(url="u")
    assert RESIZE({"url": "u", "sizes": [{"width": 64.0, "height": 48.0}], "thumbnail": {"width": 8.0}}) == Resize(
        url="u", sizes=[Size(64, 48)], thumbnail=Size(8)
    )


def test_unknown_fields_are_ignored_so_clients_may_send_new_ones_before_workers_know_them() -> None:
    assert RESIZE({"url": "u", "extra": 1, "thumbnail": {"width": 1, "depth": 2}}) == Resize(url="u", thumbnail=Size(1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "payload.url: required"),
        ({"url": "u", "sizes": [{"width": 1}, {"height": 2}]}, "payload.sizes[1].width: required"),
        ({"url": "u", "thumbnail": {"depth": 2}}, "payload.thumbnail.width: required"),
        ({"url": "u", "sizes": [{"width": 0}]}, "payload.sizes[0].width: must be positive"),
        ({"url": "u", "thumbnail": "big"}, "payload.thumbnail: expected an object, got 'big'"),
    ],
)
def test_a_payload_that_does_not_fit_names_the_path(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        RESIZE(payload)
    assert str(caught.value) == message
    assert isinstance(caught.value, NonRetryableError)


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidPayload, match=r"^payload: expected an object, got a list$"):
        RESIZE([])


def test_a_check_of_the_whole_shape_names_the_payload() -> None:
    @dataclass
    class Window:
        start: int
        end: int

        def __post_init__(self) -> None:
            if self.end < self.start:
                raise InvalidPayload("", "end comes before start")

    with pytest.raises(InvalidPayload, match=r"^payload: end comes before start$"):
        payload_parser(Window)({"start": 2, "end": 1})


@dataclass
class Tree:
    name: str
    children: list[Tree] = field(default_factory=list)


def test_a_recursive_shape_is_supported() -> None:
    parse = payload_parser(Tree)
    assert parse({"name": "a", "children": [{"name": "b"}]}) == Tree("a", [Tree("b")])
    with pytest.raises(InvalidPayload, match=r"payload\.children\[0\]\.children\[0\]\.name: required"):
        parse({"name": "a", "children": [{"name": "b", "children": [{}]}]})


@pytest.mark.parametrize(
    ("annotation", "named"),
    [
        (set[int], "set[int]"),
        (tuple[int, ...], "tuple[int, ...]"),
        (dict[int, str], "dict[int, str]"),
        (int | str, "int | str"),
        (bytes, "bytes"),
        (list[complex], "complex"),
    ],
)
def test_an_annotation_a_payload_cannot_carry_is_refused_at_registration(annotation: Any, named: str) -> None:
    registry = HandlerRegistry()
    shape = dataclasses.make_dataclass("Job", [("ok", int), ("odd", annotation)])
    with pytest.raises(TypeError, match=rf"^Job\.odd: a payload cannot carry .*{re.escape(named)}"):

        @handler("job", registry, payload=shape)
        async def job(ctx: object, payload: Any) -> dict[str, Any]:
            return {}

    assert registry.names == []


def test_a_payload_shape_must_be_a_dataclass() -> None:
    with pytest.raises(TypeError, match="must be a dataclass"):
        payload_parser(dict)


def test_an_annotation_that_cannot_be_resolved_is_refused_at_registration() -> None:
    @dataclass
    class Local:
        value: int

    @dataclass
    class Outer:  # under `from __future__ import annotations`, "Local" is looked up in the module
        inner: Local

    with pytest.raises(
        TypeError, match=r"<locals>\.Outer: cannot resolve its annotations: name 'Local' is not defined"
    ):
        payload_parser(Outer)


# Everything a JSON payload can carry, for the round trip below.
@dataclass(frozen=True)
class Point:
    x: int
    y: float = 0.0


@dataclass(frozen=True)
class Everything:
    name: str
    count: int
    ratio: float
    flag: bool
    nothing: None
    maybe: int | None
    mode: Literal["fit", "fill", 3]
    anything: Any
    tags: list[str]
    weights: dict[str, float]
    point: Point
    points: list[Point] = field(default_factory=list)
    label: str = "none"


_json_integers = st.integers(-(2**53), 2**53)  # exact as a Struct's float
_json_floats = st.floats(allow_nan=False, allow_infinity=False)
_points = st.builds(Point, x=_json_integers, y=_json_floats)
_everything = st.builds(
    Everything,
    name=st.text(),
    count=_json_integers,
    ratio=_json_floats,
    flag=st.booleans(),
    nothing=st.none(),
    maybe=st.none() | _json_integers,
    mode=st.sampled_from(["fit", "fill", 3]),
    anything=st.none() | st.booleans() | st.text() | st.lists(st.text()),
    tags=st.lists(st.text()),
    weights=st.dictionaries(st.text(), _json_floats),
    point=_points,
    points=st.lists(_points, max_size=3),
    label=st.text(),
)


@given(_everything)
def test_a_payload_built_from_a_valid_instance_round_trips_through_a_struct(instance: Everything) -> None:
    struct = struct_pb2.Struct()
    struct.update(dataclasses.asdict(instance))
    parsed = payload_parser(Everything)(json_format.MessageToDict(struct))
    assert parsed == instance
    assert type(parsed.count) is int and type(parsed.point.x) is int
