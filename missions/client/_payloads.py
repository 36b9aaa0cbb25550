"""Payloads and results as dicts: ``google.protobuf.Struct`` in and out.

A Struct stores every number as a double, so ``2`` comes back as ``2.0``. Reading one, a
float that is integral and within ±2^53 (where every integer is exact) becomes an int,
recursively; other numbers stay floats. Writing one, ints beyond 2^53 lose precision.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from missions.v1 import mission_pb2

__all__ = ["payload_dict", "plain", "result_dict", "struct_from", "struct_to_dict"]

_EXACT = 2**53


def plain(value: Any) -> Any:
    """``value`` with integral floats within ±2^53 turned into ints, in lists and dicts too."""
    if isinstance(value, float) and value.is_integer() and -_EXACT <= value <= _EXACT:
        return int(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict, integral numbers as ints."""
    return {key: plain(value) for key, value in json_format.MessageToDict(struct).items()}


def struct_from(value: dict[str, Any] | None) -> struct_pb2.Struct:
    """A Struct holding ``value`` (None → empty); TypeError or ValueError for what JSON cannot hold."""
    struct = struct_pb2.Struct()
    if value:
        struct.update(value)
    return struct


def payload_dict(mission: mission_pb2.Mission) -> dict[str, Any]:
    """The mission's payload as a dict, integral numbers as ints."""
    return struct_to_dict(mission.payload)


def result_dict(mission: mission_pb2.Mission) -> dict[str, Any]:
    """The mission's result as a dict ({} until it succeeds), integral numbers as ints."""
    return struct_to_dict(mission.result)
