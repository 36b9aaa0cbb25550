"""Fuzzing what the worker and the service's follower read from the broker.

Whatever the bytes, headers and message type, decoding either succeeds with a
consistent result or raises DecodeError; nothing else escapes, and the follower moves
past every record, counting the ones it skips.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mission_service.follower import LogFollower, ReadLog
from mission_service.store import MissionStore
from missions import codec, topology
from missions.errors import DecodeError
from missions.eventlog import ReadTally, readable_events
from missions.v1 import events_pb2
from tests.fuzz.strategies import examples
from tests.unit.factories import EventLog, struct
from worker_service.consumer import decode_work

FUZZ = settings(max_examples=examples(300), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _log() -> list[events_pb2.MissionEvent]:
    """One mission's life, every event type, as the log holds it."""
    log = EventLog()
    log.created("m1", "echo", payload=struct(text="hi", n=[1, {"deep": None}]), labels={"team": "ops"})
    log.started("m1")
    log.progress("m1", 0.5, "half")
    log.failed("m1", will_retry=True)
    log.retrying("m1")
    log.started("m1", attempt=2)
    log.failed("m1", will_retry=False)
    log.dead_lettered("m1")
    log.redriven("m1")
    log.started("m1")
    log.completed("m1", ok=True)
    log.cancelled("m1")
    return log.events


# Every event alone, and the whole life in one group-commit record.
_MESSAGES = [*(codec.encode(event) for event in _log()), codec.encode_batch(_log())]


def _mutate(body: bytes, flips: list[tuple[int, int]], cut: int, insert: bytes) -> bytes:
    mutated = bytearray(body[: max(cut, 1)] if cut < len(body) else body)
    for position, value in flips:
        if mutated:
            mutated[position % len(mutated)] = value
    middle = len(mutated) // 2
    return bytes(mutated[:middle] + insert + mutated[middle:])


_bodies = st.one_of(
    st.binary(max_size=2048),
    st.sampled_from([message.body for message in _MESSAGES]),
    st.builds(
        _mutate,
        st.sampled_from([message.body for message in _MESSAGES]),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
        st.integers(0, 2000),
        st.binary(max_size=16),
    ),
)

_header_values: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=300),
    st.binary(max_size=64),
    st.lists(st.integers(), max_size=3),
)
_header_names = st.one_of(
    st.sampled_from(
        [
            codec.SCHEMA_HEADER,
            codec.MISSION_ID_HEADER,
            topology.MISSION_TYPE_HEADER,
            codec.GENERATION_HEADER,
            codec.ATTEMPT_HEADER,
            codec.STREAM_OFFSET_HEADER,
        ]
    ),
    st.text(max_size=20),
)
_headers = st.one_of(
    st.none(),
    st.sampled_from([message.headers for message in _MESSAGES]),
    st.dictionaries(_header_names, _header_values, max_size=8),
    # Valid headers with one value replaced: the identity headers must hold up too.
    st.builds(
        lambda valid, name, value: {**valid, name: value},
        st.sampled_from([m.headers for m in _MESSAGES]),
        _header_names,
        _header_values,
    ),
)
_types = st.one_of(st.sampled_from([codec.MESSAGE_TYPE, codec.BATCH_MESSAGE_TYPE]), st.none(), st.text(max_size=255))


@FUZZ
@given(body=_bodies, headers=_headers, message_type=_types)
def test_work_decoding_raises_only_decode_error(
    body: bytes, headers: dict[str, Any] | None, message_type: str | None
) -> None:
    try:
        event, mission = decode_work(body, headers, message_type)
    except DecodeError:
        return
    assert mission.id == event.mission_id and mission.type
    assert mission.attempt >= 1
    mission.timeout.ToTimedelta()


@FUZZ
@given(headers=_headers)
def test_identity_from_headers_never_raises(headers: dict[str, Any] | None) -> None:
    claimed = codec.identity(headers)
    if claimed is not None:
        assert claimed.mission_id and len(claimed.mission_id) <= 128
        assert 0 <= claimed.generation < 2**31 - 1 and 0 <= claimed.attempt < 2**31 - 1
        assert claimed.mission_type.isascii()


@dataclass
class _Record:
    """What the follower reads of a stream delivery."""

    body: bytes
    headers: dict[str, Any] | None
    type: str | None


_records = st.one_of(
    st.sampled_from([_Record(m.body, m.headers, m.type) for m in _MESSAGES]),
    st.builds(_Record, _bodies, _headers, _types),
)


def _read_once(events: list[events_pb2.MissionEvent]) -> ReadLog:
    """A log that holds ``events`` and then nothing more."""

    async def read(
        after_sequence: int,
        *,
        attached: asyncio.Event | None = None,
        tally: ReadTally | None = None,
        gaps: bool = False,
    ) -> AsyncGenerator[events_pb2.MissionEvent, None]:
        for event in events:
            if event.sequence > after_sequence:
                yield event
        await asyncio.Future()

    return read


async def _followed(follower: LogFollower, last_sequence: int) -> None:
    """Run ``follower`` until its position reaches ``last_sequence``."""
    running = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(10):
            # A gap moves the position and tells no listener: nothing else to wait on.
            while follower.position < last_sequence:  # noqa: ASYNC110
                await asyncio.sleep(0)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


@FUZZ
@given(records=st.lists(_records, min_size=1, max_size=30))
def test_the_follower_moves_past_every_record_and_counts_the_undecodable(records: list[_Record]) -> None:
    store = MissionStore(":memory:")
    try:
        tally = ReadTally()
        # As read_log(gaps=True) turns records into events: a record that does not decode is a gap.
        per_record = [
            readable_events(offset, cast(AbstractIncomingMessage, record), "fuzz.log", tally)
            or [events_pb2.MissionEvent(sequence=codec.sequence_at(offset))]
            for offset, record in enumerate(records)
        ]
        assert tally.skipped == sum(1 for events in per_record if not events[0].id)
        assert tally.records == len(records)
        batch = [event for events in per_record for event in events]
        handed_out: list[events_pb2.MissionEvent] = []
        follower = LogFollower(_read_once(batch), store, handed_out.extend)
        asyncio.run(_followed(follower, batch[-1].sequence))
        decoded = [event.sequence for event in batch if event.id]
        assert follower.position == batch[-1].sequence
        assert [event.sequence for event in batch] == sorted({event.sequence for event in batch})
        # Every decoded event but those the store recorded as duplicates (a second CREATED...).
        duplicates = store.duplicates_after(0)
        assert [event.sequence for event in handed_out] == [seq for seq in decoded if seq not in duplicates]
        assert store.checkpoint() == (decoded[-1] if decoded else 0)
    finally:
        store.close()
