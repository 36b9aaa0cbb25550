"""Hypothesis strategies for hostile requests: edge-case text, extreme integers, huge and deep Structs."""

from __future__ import annotations

import operator
import os
from typing import Any

from google.protobuf import duration_pb2, message, struct_pb2
from hypothesis import strategies as st

from missions.v1 import mission_service_pb2 as pb

__all__ = ["calls", "examples", "metadata", "raw_calls"]


def examples(default: int) -> int:
    """Examples per hypothesis run: ``default``, or MISSIONS_FUZZ_EXAMPLES for a longer hunt."""
    return int(os.environ.get("MISSIONS_FUZZ_EXAMPLES", default))


INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)

# Characters that break naive code: NUL, controls, bidi overrides, zero-width joiners,
# combining marks, a BOM, 4-byte code points. Lone surrogates cannot be encoded at all.
_NASTY = "\x00\x01\x1f\x7f\u0085\u200b\u200d\u200e\u200f\u202a\u202e\u2066\u0301\ufeff\uffff\U0001f600\U0010ffff"


def _ints(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    edges = sorted({value for value in (low, low + 1, -1, 0, 1, high - 1, high) if low <= value <= high})
    # Small values too, so that some requests pass validation and go deeper.
    return st.one_of(st.sampled_from(edges), st.integers(low, high), st.integers(max(low, 0), min(high, 5)))


def _text(max_size: int = 80, *, long: bool = True) -> st.SearchStrategy[str]:
    small = st.text(st.one_of(st.sampled_from(_NASTY), st.characters(exclude_categories=["Cs"])), max_size=max_size)
    if not long:
        return small
    # Very long strings, built rather than drawn character by character (that is slow).
    repeated = st.builds(operator.mul, st.sampled_from(["x", "\U0001f600", "\u202e", "\x00"]), st.integers(0, 300_000))
    return st.one_of(small, small, repeated)


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited protobuf field, by hand: deep Structs cannot be built in-process."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _deep_struct(depth: int, as_list: bool) -> bytes:
    """A serialized Struct nesting ``depth`` dicts ({"k": {...}}) or lists ([[...]])."""
    struct = b""
    for _ in range(depth):
        # {"k": Value{list_value: ListValue{values: [Value{struct_value}]}}} or {"k": Value{struct_value}}
        inner = _field(6, _field(1, _field(5, struct))) if as_list else _field(5, struct)
        struct = _field(1, _field(1, b"k") + _field(2, inner))
    return struct


def _struct(fields: dict[str, Any]) -> bytes:
    struct = struct_pb2.Struct()
    struct.update(fields)
    return struct.SerializeToString()


_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 2.0**53, 1e308, -1e308, 5e-324]),
        _text(40, long=False),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(_text(20, long=False), children, max_size=6)
    ),
    max_leaves=40,
)

# Serialized Structs.
_payloads = st.one_of(
    st.dictionaries(_text(20, long=False), _json, max_size=8).map(_struct),
    # Deep: around the depth limit (32) and past the protobuf parser's recursion limit.
    st.builds(_deep_struct, st.integers(1, 200), st.booleans()),
    # Huge: around the payload limit (256 KiB) and past the request limit (1 MiB).
    st.builds(lambda n: _struct({"blob": "x" * n}), st.sampled_from([256 * 1024 - 20, 256 * 1024, 600_000, 2_000_000])),
    st.builds(lambda n: _struct({f"k{i}": i for i in range(n)}), st.integers(0, 20_000)),
)

_submit_fields = st.builds(
    pb.SubmitMissionRequest,
    type=st.one_of(st.sampled_from(["echo", "sleep", "x" * 128, "x" * 129]), _text()),
    priority=_ints(INT32),
    max_attempts=_ints(INT32),
    timeout=st.builds(duration_pb2.Duration, seconds=_ints(INT64), nanos=_ints(INT32)),
    labels=st.dictionaries(_text(70, long=False), _text(300, long=False), max_size=70),
    idempotency_key=_text(300),
)

_list = st.builds(
    pb.ListMissionsRequest,
    page_size=_ints(INT32),
    page_token=_text(),
    states=st.lists(_ints(INT32), max_size=5),
    type=_text(),
)

_dead_letters = st.builds(pb.ListDeadLettersRequest, page_size=_ints(INT32), page_token=_text(), type=_text())

_watch = st.builds(
    pb.WatchEventsRequest,
    mission_ids=st.one_of(
        st.lists(_text(200, long=False), max_size=5),
        st.builds(lambda n: [f"m{i}" for i in range(n)], st.integers(0, 3000)),
    ),
    types=st.lists(_ints(INT32), max_size=5),
    after_sequence=_ints(UINT64),
    mission_types=st.lists(_text(200, long=False), max_size=5),
    label_selector=_text(),
)

_by_id = st.one_of(
    st.builds(pb.GetMissionRequest, mission_id=_text()),
    st.builds(pb.CancelMissionRequest, mission_id=_text(), reason=_text()),
    st.builds(pb.RedriveMissionRequest, mission_id=_text(), max_attempts=_ints(INT32)),
    st.builds(pb.ListWorkersRequest, include_gone=st.booleans()),
    st.builds(pb.GetStatsRequest),
)


def _call(request: message.Message) -> tuple[str, bytes]:
    return type(request).__name__.removesuffix("Request"), request.SerializeToString()


# (method, serialized request) of MissionService, built from hostile field values; a
# submission's payload is appended as its field 2, which the wire format allows.
calls = st.one_of(
    st.builds(
        lambda fields, payload: ("SubmitMission", _call(fields)[1] + _field(2, payload)), _submit_fields, _payloads
    ),
    *(strategy.map(_call) for strategy in (_list, _dead_letters, _watch, _by_id)),
)

_RESERVED = ("grpc-", ":")
_key = st.from_regex(r"[a-z0-9_.\-]{1,40}", fullmatch=True).filter(lambda key: not key.startswith(_RESERVED))
_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)

# Metadata that grpc lets a client send: ASCII keys, printable values, bytes for "-bin" keys.
metadata = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["x-correlation-id", "authorization", "x-missions-principal"]), _printable),
        st.tuples(_key.filter(lambda key: not key.endswith("-bin")), _printable),
        st.tuples(_key.map(lambda key: f"{key}-bin"), st.binary(max_size=200)),
    ),
    max_size=6,
)

_METHODS = [method.name for method in pb.DESCRIPTOR.services_by_name["MissionService"].methods]

# (method, random bytes): mostly not a protobuf message at all.
raw_calls = st.tuples(st.sampled_from(_METHODS), st.binary(max_size=4096))
