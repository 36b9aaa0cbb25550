"""When a schedule fires: its firing times, from a cron expression in a time zone or a fixed interval.

Cron expressions are read by cronsim (5 fields, the Debian cron dialect, time-zone aware: a
time that a daylight saving change skips fires at the next one that exists, one that occurs
twice fires once), rather than a parser of our own. Interval firings are counted from the
schedule's creation, so every replica, and the same replica after a restart, derives the same
firing times from the log alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from google.protobuf import timestamp_pb2

from missions.v1 import schedule_pb2

__all__ = ["Recurrence", "RecurrenceError", "recurrence", "timestamp"]

_ONE_SECOND = 1_000_000_000


class RecurrenceError(ValueError):
    """A schedule's cron expression, time zone or interval cannot be read; ``field`` names it."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


@dataclass(frozen=True, slots=True)
class Recurrence:
    """The firing times of one schedule, as epoch nanoseconds."""

    next_after: Callable[[int], int]
    """The first firing time strictly after the given instant."""
    latest_until: Callable[[int], int | None]
    """The last firing time at or before the given instant (None: none yet)."""


def recurrence(schedule: schedule_pb2.Schedule) -> Recurrence:
    """The firing times of ``schedule``; RecurrenceError naming the field when they cannot be read."""
    if schedule.cron and schedule.HasField("interval"):
        raise RecurrenceError("schedule.interval", "give either cron or interval, not both")
    if schedule.cron:
        return _cron(schedule.cron, schedule.time_zone)
    if schedule.HasField("interval"):
        if schedule.time_zone:
            raise RecurrenceError("schedule.time_zone", "applies to cron only, not to an interval")
        return _every(schedule.interval.ToNanoseconds(), schedule.create_time.ToNanoseconds())
    raise RecurrenceError("schedule.cron", "a schedule needs a cron expression or an interval")


def _cron(expression: str, time_zone: str) -> Recurrence:
    if len(expression.split()) != 5:
        raise RecurrenceError(
            "schedule.cron", f"{expression[:100]!r} must have 5 fields (minute hour day month weekday)"
        )
    zone: tzinfo
    try:
        zone = ZoneInfo(time_zone) if time_zone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise RecurrenceError("schedule.time_zone", f"{time_zone[:100]!r} is not an IANA time zone") from None
    try:
        CronSim(expression, datetime.now(zone))
    except CronSimError as exc:
        raise RecurrenceError("schedule.cron", f"{expression[:100]!r} is not a cron expression: {exc}") from None

    def next_after(instant: int) -> int:
        return _nanos(next(CronSim(expression, _datetime(instant, zone))))

    def latest_until(instant: int) -> int | None:
        # cronsim looks strictly before its start, at whole seconds; cron fires at whole minutes.
        start = _datetime(instant, zone) + timedelta(seconds=1)
        return _nanos(next(CronSim(expression, start, reverse=True)))

    return Recurrence(next_after, latest_until)


_MAX_INTERVAL = 366 * 24 * 3600 * _ONE_SECOND


def _every(interval: int, anchor: int) -> Recurrence:
    if not _ONE_SECOND <= interval <= _MAX_INTERVAL:
        raise RecurrenceError("schedule.interval", "must be between 1 s and 366 days")

    def next_after(instant: int) -> int:
        return anchor + max(1, (instant - anchor) // interval + 1) * interval

    def latest_until(instant: int) -> int | None:
        count = (instant - anchor) // interval
        return anchor + count * interval if count >= 1 else None

    return Recurrence(next_after, latest_until)


def _datetime(nanos: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(nanos // 1000 / 1e6, UTC).astimezone(zone)


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp()) * _ONE_SECOND


def timestamp(nanos: int) -> timestamp_pb2.Timestamp:
    """``nanos`` (since the epoch) as a Timestamp."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(nanos)
    return stamp
