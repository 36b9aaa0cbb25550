"""Messages to and from the proto3 JSON mapping, with the .proto's field names (as ``missionctl -o json``).

A value that does not fit its field is an InvalidArgumentError naming the field: each top-level
field is parsed on its own, so the error names the one at fault (its description gives the path
inside it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

from google.protobuf import descriptor, json_format
from google.protobuf.message import Message

from missions.errors import InvalidArgumentError

__all__ = ["REQUEST", "from_json_body", "from_query", "to_json", "to_json_text"]

REQUEST = "request"
"""The field an error names when the request as a whole is at fault (as the gRPC port's)."""

M = TypeVar("M", bound=Message)

_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def to_json(message: Message) -> dict[str, Any]:
    converted: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return converted


def to_json_text(message: Message) -> str:
    """``message`` as one line of JSON (what an SSE ``data:`` line holds)."""
    return json.dumps(to_json(message), separators=(",", ":"))


def _field(message: Message, name: str) -> descriptor.FieldDescriptor:
    fields = message.DESCRIPTOR.fields_by_name
    found = fields.get(name) or next((f for f in fields.values() if f.json_name == name), None)
    if found is None:
        raise InvalidArgumentError(name, f"{message.DESCRIPTOR.name} has no field {name!r}")
    return cast(descriptor.FieldDescriptor, found)


def _merge(values: Mapping[str, Any], message: M) -> M:
    for name, value in values.items():
        _field(message, name)
        try:
            json_format.ParseDict({name: value}, message)
        except json_format.ParseError as exc:
            raise InvalidArgumentError(name, str(exc)) from None
    return message


def from_json_body(body: bytes, kind: type[M]) -> M:
    """The ``kind`` message a JSON object holds; an empty body is the empty message."""
    if not body.strip():
        return kind()
    try:
        values = json.loads(body)
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise InvalidArgumentError(REQUEST, f"the body is not JSON: {exc}") from None
    if not isinstance(values, dict):
        raise InvalidArgumentError(REQUEST, f"the body must be a JSON object ({kind.DESCRIPTOR.name})")
    return _merge(values, kind())


def from_query(query: Mapping[str, Sequence[str]], kind: type[M]) -> M:
    """The ``kind`` message of query parameters named as its fields: a repeated field once per value,
    others at most once; enums by name or number, booleans true/false, timestamps in RFC 3339."""
    message = kind()
    values: dict[str, Any] = {}
    for name, given in query.items():
        field = _field(message, name)
        if field.is_repeated:
            values[name] = list(given)
            continue
        if len(given) > 1:
            raise InvalidArgumentError(name, "given more than once")
        [value] = given
        if field.type == descriptor.FieldDescriptor.TYPE_BOOL:
            if value.lower() not in _BOOLEANS:
                raise InvalidArgumentError(name, f"expected true or false, got {value!r}")
            values[name] = _BOOLEANS[value.lower()]
        else:
            values[name] = value
    return _merge(values, message)
