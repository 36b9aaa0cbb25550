"""missionctl's text views: responses as rich renderables for people."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from rich.table import Table
from rich.text import Text

from missions.client._payloads import struct_to_dict
from missions.ctl.enums import EVENT, PRIORITY, STATE, WORKER_STATE, life_cycle_order, short
from missions.events import is_scheduled
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from missions.v1 import mission_service_pb2 as pb

__all__ = [
    "NO_WORKER",
    "STYLES",
    "event_details",
    "event_line",
    "key_values",
    "mission_rows",
    "mission_types_table",
    "missions_table",
    "rate",
    "state_counts",
    "stats_rows",
    "unserved",
    "workers_table",
]

STYLES = {
    "SUCCEEDED": "green",
    "COMPLETED": "green",
    "ACTIVE": "green",
    "FAILED": "red",
    "DEAD_LETTERED": "red",
    "LOST": "red",
    "CANCELLED": "yellow",
    "STOPPING": "yellow",
}

# Marks a mission type whose missions wait with no live worker to run them.
NO_WORKER = "no worker"


# --- values ---


def time(stamp: timestamp_pb2.Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _age(stamp: timestamp_pb2.Timestamp, now: datetime, unset: str = "") -> str:
    """How long before ``now`` the instant was, e.g. ``4m05s ago``; ``unset`` when it is not set."""
    if not stamp.seconds and not stamp.nanos:
        return unset
    # A clock ahead of ours is no reason to print a negative age.
    seconds = max(0, int((now - stamp.ToDatetime(tzinfo=UTC)).total_seconds()))
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    if days:
        return f"{days}d{hrs:02}h ago"
    if hours:
        return f"{hours}h{mins:02}m ago"
    return f"{minutes}m{secs:02}s ago" if minutes else f"{secs}s ago"


def seconds(span: duration_pb2.Duration) -> str:
    return f"{span.ToTimedelta().total_seconds():g}s"


def compact(struct: struct_pb2.Struct, limit: int = 0) -> str:
    text = json.dumps(struct_to_dict(struct), separators=(",", ":"), ensure_ascii=False)
    return text if not limit or len(text) <= limit else text[: limit - 1] + "…"


def _error(error: mission_pb2.MissionError) -> str:
    return f"{error.type}: {error.message}" if error.type or error.message else ""


def _by(who: str) -> str:
    return f" by {who}" if who else ""


# --- views ---


def key_values(rows: Iterable[tuple[str, str]]) -> Table:
    """A two-column grid of the rows that have a value."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for key, value in rows:
        if value:
            grid.add_row(key, Text(value, style=STYLES.get(value, "")))
    return grid


def _id_column(table: Table, ids: Iterable[str]) -> None:
    # Ids are what users copy: never cut them, let the other columns give way.
    table.add_column("ID", no_wrap=True, min_width=max((len(text) for text in ids), default=2))


def mission_rows(mission: mission_pb2.Mission) -> Iterator[tuple[str, str]]:
    yield "id", mission.id
    yield "type", mission.type
    yield "state", short(STATE, mission.state)
    yield "priority", short(PRIORITY, mission.priority)
    yield "attempt", f"{mission.attempt} of {mission.max_attempts}"
    if mission.progress or mission.progress_message:
        yield "progress", f"{mission.progress:.0%} {mission.progress_message}".rstrip()
    yield "worker", mission.worker_id
    yield "timeout", seconds(mission.timeout) if mission.HasField("timeout") else ""
    yield "labels", ", ".join(f"{key}={value}" for key, value in sorted(mission.labels.items()))
    yield "idempotency key", mission.idempotency_key
    yield "payload", compact(mission.payload)
    yield "result", compact(mission.result) if mission.HasField("result") else ""
    yield "error", _error(mission.error) + (" (retryable)" if mission.error.retryable else "")
    for name in ("create", "due", "start", "end", "update"):
        yield f"{name} time", time(getattr(mission, f"{name}_time"))
    yield "last sequence", str(mission.last_sequence)


def missions_table(missions: Iterable[mission_pb2.Mission], *, last_error: bool) -> Table:
    missions = list(missions)
    table = Table(box=None, header_style="bold")
    _id_column(table, (mission.id for mission in missions))
    headers = ["TYPE", "STATE", "PRIORITY", "ATTEMPT", "PROGRESS", "CREATED"]
    for header in [*headers, "ERROR"] if last_error else headers:
        table.add_column(header)
    for mission in missions:
        state = short(STATE, mission.state)
        cells: list[Text | str] = [
            Text(mission.id, no_wrap=True),
            Text(mission.type),
            Text(state, style=STYLES.get(state, "")),
            short(PRIORITY, mission.priority).lower(),
            f"{mission.attempt}/{mission.max_attempts}",
            f"{mission.progress:.0%}",
            time(mission.create_time),
        ]
        if last_error:
            cells.append(Text(_error(mission.error)))
        table.add_row(*cells)
    return table


def workers_table(
    workers: Iterable[worker_pb2.Worker], now: datetime, rates: Mapping[str, float | None] | None = None
) -> Table:
    """One row per worker; with ``rates`` (attempts per second by worker id, as ``top`` measures) a RATE column."""
    workers = list(workers)
    table = Table(box=None, header_style="bold")
    _id_column(table, (worker.id for worker in workers))
    headers = ["HOST", "PID", "STATE", "RUNNING", "FINISHED", "TYPES", "HEARTBEAT", "DELIVERY"]
    if rates is not None:
        headers.insert(5, "RATE")
    for header in headers:
        table.add_column(header)
    for worker in workers:
        state = short(WORKER_STATE, worker.state)
        cells: list[Text | str] = [
            Text(worker.id, no_wrap=True),
            Text(worker.host),
            str(worker.pid),
            Text(state, style=STYLES.get(state, "")),
            f"{worker.running}/{worker.concurrency}",
            str(worker.finished),
            Text(",".join(worker.handler_types)),
            _age(worker.heartbeat_time, now),
            _age(worker.last_delivery_time, now, unset="never"),
        ]
        if rates is not None:
            cells.insert(6, rate(rates.get(worker.id)))
        table.add_row(*cells)
    return table


def rate(per_second: float | None) -> str:
    """A rate for people: ``2.5/s``, or ``-`` while it is not known yet."""
    return "-" if per_second is None else f"{per_second:.1f}/s"


def state_counts(stats: pb.GetStatsResponse) -> list[tuple[str, int]]:
    """Every state with its count, in lifecycle order, so views keep their shape; the service omits zeros."""
    counts = {count.state: count.count for count in stats.states}
    known = sorted((number for number in STATE[1].values() if number), key=life_cycle_order)
    return [(short(STATE, number), counts.get(number, 0)) for number in known + sorted(counts.keys() - set(known))]


def stats_rows(stats: pb.GetStatsResponse) -> Iterator[tuple[str, str]]:
    for name, count in state_counts(stats):
        yield name, str(count)
    yield "queue depth", str(stats.queue_depth)
    yield "dead letters", str(stats.dead_letter_depth)
    if stats.unreadable_messages:
        yield "unreadable messages", str(stats.unreadable_messages)
    yield "running now", str(stats.running)
    yield "succeeded last hour", str(stats.succeeded_last_hour)
    yield "failed last hour", str(stats.failed_last_hour)
    yield "active workers", str(stats.active_workers)
    yield "last sequence", str(stats.last_sequence)


def unserved(stats: pb.GetStatsResponse) -> list[pb.MissionTypeStats]:
    """The mission types with waiting missions and no active worker: they wait until one starts."""
    return [kind for kind in stats.mission_types if kind.waiting and not kind.active_workers]


def mission_types_table(stats: pb.GetStatsResponse) -> Table:
    """One row per mission type the service lists; a type nobody can run is marked ``no worker``."""
    table = Table(box=None, header_style="bold")
    table.add_column("TYPE", no_wrap=True)
    for header in ("WAITING", "DEPTH", "WORKERS", ""):
        table.add_column(header)
    starved = {kind.mission_type for kind in unserved(stats)}
    for kind in stats.mission_types:
        table.add_row(
            Text(kind.mission_type),
            str(kind.waiting),
            str(kind.queue_depth),
            str(kind.active_workers),
            Text(NO_WORKER, style="red") if kind.mission_type in starved else "",
        )
    return table


def event_details(event: events_pb2.MissionEvent) -> str:
    match event.WhichOneof("details"):
        case "created":
            mission = event.created.mission
            due = f" due at {time(mission.due_time)}" if is_scheduled(mission) else ""
            return f"{mission.type} priority={short(PRIORITY, mission.priority).lower()}{due}"
        case "started":
            return f"attempt {event.attempt} on {event.started.worker_id}"
        case "progress":
            return f"{event.progress.fraction:.0%} {event.progress.message}".rstrip()
        case "completed":
            completed = event.completed
            return f"in {seconds(completed.duration)} result={compact(completed.result, 80)}"
        case "failed":
            retry = " (will retry)" if event.failed.will_retry else ""
            return f"attempt {event.attempt}: {_error(event.failed.error)}{retry}"
        case "retrying":
            return f"next attempt in {seconds(event.retrying.delay)}"
        case "cancelled":
            return (event.cancelled.reason or "no reason given") + _by(event.cancelled.cancelled_by)
        case "dead_lettered":
            return f"{event.dead_lettered.reason}: {_error(event.dead_lettered.last_error)}"
        case "redriven":
            redriven = event.redriven
            budget = f"redrive {redriven.redrive_count}, max attempts {redriven.mission.max_attempts}"
            return budget + _by(redriven.requested_by)
        case "purged":
            return "purged from the dead letters" + _by(event.purged.requested_by)
        case "due":
            return f"due at {time(event.due.due_time)}, queued"
        case ("schedule_paused" | "schedule_resumed" | "schedule_deleted") as kind:
            return f"schedule {event.schedule_id}" + _by(getattr(event, kind).requested_by)
        case "schedule_created" | "schedule_fired":
            return f"schedule {event.schedule_id}" + _fired(event)
    return ""


def _fired(event: events_pb2.MissionEvent) -> str:
    """What a schedule's firing did (nothing to say of its creation)."""
    if event.type != events_pb2.EVENT_TYPE_SCHEDULE_FIRED:
        return ""
    fired = event.schedule_fired
    outcome = (
        fired.mission_id
        or f"skipped ({events_pb2.SkipReason.Name(fired.skip_reason).removeprefix('SKIP_REASON_').lower()})"
    )
    return f" for {time(fired.fire_time)}: {outcome}"


def event_line(event: events_pb2.MissionEvent) -> Text:
    """One event as one line: sequence, time, mission id, type and details."""
    kind = short(EVENT, event.type)
    line = Text(f"{event.sequence:>9}  {time(event.time) or '-'}  {event.mission_id}  ")
    line.append(f"{kind:<13}", style=STYLES.get(kind, "cyan"))
    line.append(f" {event_details(event)}")
    return line
