"""Retry backoff: the exponential bound, the snapping of delays and the jittered pick."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from missions.backoff import backoff_bound, full_jitter, snap_delay_ms

_MS = timedelta(milliseconds=1)
_ONE_US = timedelta(microseconds=1)

attempts = st.integers(min_value=1, max_value=40)
bases = st.integers(min_value=1, max_value=10_000).map(lambda ms: ms * _MS)
caps = st.integers(min_value=1, max_value=3_600_000).map(lambda ms: ms * _MS)


@pytest.mark.parametrize(
    ("attempt", "expected_s"),
    [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (7, 30), (100, 30)],
)
def test_backoff_bound_doubles_from_base_up_to_cap(attempt: int, expected_s: float) -> None:
    assert backoff_bound(attempt, timedelta(seconds=1), timedelta(seconds=30)) == timedelta(seconds=expected_s)


def test_backoff_bound_treats_attempt_zero_like_the_first() -> None:
    assert backoff_bound(0, timedelta(seconds=2), timedelta(minutes=5)) == timedelta(seconds=2)


def test_backoff_bound_of_a_huge_attempt_is_the_cap_without_overflow() -> None:
    assert backoff_bound(10_000, timedelta(seconds=1), timedelta(minutes=5)) == timedelta(minutes=5)


@given(attempts, bases, caps)
def test_backoff_bound_is_min_of_cap_and_base_times_two_to_the_n_minus_one(
    attempt: int, base: timedelta, cap: timedelta
) -> None:
    expected = min(cap, base * 2 ** (attempt - 1))
    assert abs(backoff_bound(attempt, base, cap) - expected) <= _ONE_US


@given(attempts, bases, caps)
def test_backoff_bound_never_shrinks_with_more_attempts(attempt: int, base: timedelta, cap: timedelta) -> None:
    assert backoff_bound(attempt + 1, base, cap) >= backoff_bound(attempt, base, cap)


@given(st.integers(min_value=-1000, max_value=7))
def test_snap_is_zero_below_eight_ms(delay_ms: int) -> None:
    assert snap_delay_ms(delay_ms) == 0


@given(st.integers(min_value=8, max_value=2**48))
def test_snap_rounds_down_by_less_than_twenty_percent(delay_ms: int) -> None:
    snapped = snap_delay_ms(delay_ms)
    assert snapped <= delay_ms
    assert snapped >= 0.8 * delay_ms


@given(st.integers(min_value=8, max_value=2**48))
def test_snap_lands_on_a_two_bit_mantissa_and_is_idempotent(delay_ms: int) -> None:
    snapped = snap_delay_ms(delay_ms)
    octave = 1 << (snapped.bit_length() - 1)
    # m * 2^e with m in 4..7: the value is the octave plus a multiple of a quarter octave.
    assert snapped % (octave // 4) == 0
    assert snap_delay_ms(snapped) == snapped
    assert octave <= delay_ms < 2 * octave


@pytest.mark.parametrize("octave_exponent", range(3, 14))
def test_snap_has_exactly_four_steps_per_octave(octave_exponent: int) -> None:
    low = 1 << octave_exponent
    steps = {snap_delay_ms(delay) for delay in range(low, 2 * low)}
    assert sorted(steps) == [low * m // 4 for m in (4, 5, 6, 7)]


def test_snap_examples_from_the_module_doc() -> None:
    assert [snap_delay_ms(ms) for ms in (8, 9, 10, 11, 12, 15, 16, 19, 20, 1000)] == [
        8,
        8,
        10,
        10,
        12,
        14,
        16,
        16,
        20,
        896,
    ]


@given(attempts, bases, caps, st.integers(min_value=0, max_value=2**32))
def test_full_jitter_stays_within_zero_and_the_bound(attempt: int, base: timedelta, cap: timedelta, seed: int) -> None:
    delay = full_jitter(attempt, base, cap, random.Random(seed))
    delay_ms = delay / _MS
    assert delay_ms == int(delay_ms)  # whole milliseconds: one delay queue per value
    assert timedelta(0) <= delay <= backoff_bound(attempt, base, cap)
    assert snap_delay_ms(int(delay_ms)) == int(delay_ms)


class _Extreme(random.Random):
    """An rng that always picks the top (or bottom) of the range."""

    def __init__(self, top: bool) -> None:
        super().__init__()
        self.top = top

    def randint(self, a: int, b: int) -> int:
        return b if self.top else a


@pytest.mark.parametrize(
    ("attempt", "base_ms", "expected_ms"),
    [
        (3, 100, 384),  # bound 400 ms, snapped down to 6 * 64
        (1, 7, 0),  # below the smallest delay: straight back to the work queue
        (1, 11, 10),
        (1, 16, 16),
    ],
)
def test_full_jitter_top_pick_is_the_snapped_bound(attempt: int, base_ms: int, expected_ms: int) -> None:
    assert full_jitter(attempt, base_ms * _MS, timedelta(seconds=10), _Extreme(top=True)) == expected_ms * _MS


@given(attempts, bases, caps)
def test_full_jitter_never_exceeds_the_bound_even_at_the_top(attempt: int, base: timedelta, cap: timedelta) -> None:
    bound = backoff_bound(attempt, base, cap)
    delay = full_jitter(attempt, base, cap, _Extreme(top=True))
    assert delay <= bound
    assert delay == snap_delay_ms(int(bound / _MS)) * _MS


def test_full_jitter_bottom_pick_is_zero() -> None:
    assert full_jitter(3, 100 * _MS, timedelta(seconds=10), _Extreme(top=False)) == timedelta(0)
