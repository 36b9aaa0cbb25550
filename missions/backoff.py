"""Retry backoff: exponential bound with full jitter, snapped to a small set of delays.

Delayed re-delivery happens in the broker through one delay queue per distinct delay
(a queue-wide TTL keeps each queue FIFO in expiry order, so no message waits behind a
longer one). To keep the number of such queues small, a delay is rounded *down* to a
value with a 2-bit mantissa (4 steps per doubling: 8, 10, 12, 14, 16, 20, ... ms), so the
delay never exceeds its bound and is never shorter than 80 % of the jittered pick,
except below 8 ms where it is 0 (the retry goes straight back to the work queue).
"""

from __future__ import annotations

import random
from datetime import timedelta

__all__ = ["backoff_bound", "full_jitter", "snap_delay_ms"]

_MIN_DELAY_MS = 8


def backoff_bound(failed_attempt: int, base: timedelta, cap: timedelta) -> timedelta:
    """Upper bound of the delay after ``failed_attempt`` (1-based): min(cap, base * 2^(n-1))."""
    exponent = max(failed_attempt - 1, 0)
    # Work in float seconds, with the exponent clamped, so large attempts cannot overflow.
    bound_s = min(cap.total_seconds(), base.total_seconds() * 2.0 ** min(exponent, 64))
    return timedelta(seconds=bound_s)


def snap_delay_ms(delay_ms: int) -> int:
    """Largest value <= delay_ms of the form m * 2^e with m in 4..7 (0 below 8 ms)."""
    if delay_ms < _MIN_DELAY_MS:
        return 0
    exponent = delay_ms.bit_length() - 3
    return (delay_ms >> exponent) << exponent


def full_jitter(failed_attempt: int, base: timedelta, cap: timedelta, rng: random.Random | None = None) -> timedelta:
    """Delay before the next attempt: uniform in [0, bound], snapped down (see module doc)."""
    bound_ms = int(backoff_bound(failed_attempt, base, cap).total_seconds() * 1000)
    pick = (rng or random).randint(0, bound_ms)
    return timedelta(milliseconds=snap_delay_ms(pick))
