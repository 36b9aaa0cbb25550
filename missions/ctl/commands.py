"""missionctl commands: each takes the service's client, the output and the parsed flags, and returns an exit code."""

from __future__ import annotations

import argparse
import functools
import itertools
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import grpc
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from missions import errors
from missions.client import Client, DeadLetterFilters, WatchFilters
from missions.client._payloads import struct_to_dict
from missions.ctl import enums
from missions.ctl.board import CAPACITY, MissionBoard, rows_shown
from missions.ctl.output import Output, warn
from missions.ctl.render import event_line
from missions.events import TERMINAL_STATES
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from missions.v1 import mission_service_pb2 as pb

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_MISSION_UNSUCCESSFUL",
    "EXIT_OK",
    "EXIT_RPC_BASE",
    "EXIT_USAGE",
    "Command",
    "cancel",
    "dead_letters",
    "get",
    "list_missions",
    "purge_dead_letters",
    "redrive",
    "redrive_dead_letters",
    "stats",
    "submit",
    "watch",
    "workers",
]

# The exit codes the package docstring documents.
EXIT_OK = 0
EXIT_MISSION_UNSUCCESSFUL = 1
EXIT_USAGE = 2
EXIT_RPC_BASE = 3
EXIT_INTERRUPTED = 130
# 128 + SIGPIPE: what a shell reports for a writer stopped by a closed pipe, as `yes | head` is.
EXIT_BROKEN_PIPE = 141

Command = Callable[[Client, Output, argparse.Namespace], int]

# States of a mission that waits for a worker to take it.
_WAITING = frozenset({mission_pb2.MISSION_STATE_QUEUED, mission_pb2.MISSION_STATE_RETRYING})
# States of a mission not final yet: a watch's table starts with them.
_UNFINISHED = (*_WAITING, mission_pb2.MISSION_STATE_RUNNING)

# An argument that may be the leading part of a mission id (a UUID of 36 characters).
_ID_PREFIX = re.compile(r"[0-9A-Fa-f-]{8,35}")
# Matches shown for an ambiguous prefix.
_SHOWN_MATCHES = 10

# The two paged listings share their paging fields.
_Page = TypeVar("_Page", pb.ListMissionsResponse, pb.ListDeadLettersResponse)
# The two bulk operations on dead letters answer alike.
Bulk = pb.RedriveDeadLettersResponse | pb.PurgeDeadLettersResponse


class _Unresolved(Exception):
    """An id prefix that names no mission, or more than one; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _full_id(client: Client, given: str) -> str:
    """The mission id ``given`` names: itself, or the one id it is a unique prefix of (8 or more
    hex digits and dashes); else _Unresolved."""
    if not _ID_PREFIX.fullmatch(given):
        return given
    found = next(client.list_pages(id_prefix=given, page_size=_SHOWN_MATCHES + 1)).missions
    if len(found) == 1:
        return str(found[0].id)
    if not found:
        not_found = grpc.StatusCode.NOT_FOUND
        raise _Unresolved(
            f"error: {not_found.name}: no mission id starts with {given!r}", EXIT_RPC_BASE + not_found.value[0]
        )
    shown = "\n".join(f"  {mission.id}" for mission in found[:_SHOWN_MATCHES])
    more = "\n  ..." if len(found) > _SHOWN_MATCHES else ""
    raise _Unresolved(f"missionctl: error: {given!r} is the start of several mission ids:\n{shown}{more}", EXIT_USAGE)


def _by_id(command: Command) -> Command:
    """``command`` with ``args.id`` resolved first: a unique id prefix stands for the whole id."""

    @functools.wraps(command)
    def run(client: Client, out: Output, args: argparse.Namespace) -> int:
        try:
            args.id = _full_id(client, args.id)
        except _Unresolved as exc:
            warn(str(exc))
            return exc.code
        return command(client, out, args)

    return run


@_by_id
def get(client: Client, out: Output, args: argparse.Namespace) -> int:
    out.mission(pb.GetMissionResponse(mission=client.get(args.id)))
    return EXIT_OK


def list_missions(client: Client, out: Output, args: argparse.Namespace) -> int:
    pages = client.list_pages(
        states=[enums.value(enums.STATE, state) for state in args.state or ()],
        type=args.type or "",
        page_size=args.page_size or 0,
        page_token=args.page_token or "",
        labels=dict(args.label or ()),
        # A bound not given is None, which the request leaves unset.
        min_create_time=args.created_after,
        max_create_time=args.created_before,
        min_end_time=args.ended_after,
        max_end_time=args.ended_before,
        newest_first=args.newest_first,
    )
    out.missions(_joined(pages, follow=args.all))
    return EXIT_OK


def dead_letters(client: Client, out: Output, args: argparse.Namespace) -> int:
    pages = client.dead_letter_pages(
        page_size=args.page_size or 0, page_token=args.page_token or "", **_dead_letter_filters(args)
    )
    out.missions(_joined(pages, follow=args.all), last_error=True)
    return EXIT_OK


def _dead_letter_filters(args: argparse.Namespace) -> DeadLetterFilters:
    return DeadLetterFilters(type=args.type or "", error_type=args.error_type or "", labels=dict(args.label or ()))


def redrive_dead_letters(client: Client, out: Output, args: argparse.Namespace) -> int:
    filters = _dead_letter_filters(args)

    def redrive(dry_run: bool) -> Bulk:
        return client.redrive_dead_letters(max_attempts=args.max_attempts or 0, dry_run=dry_run, **filters)

    return _bulk(out, args, ("redrive", "redriven"), redrive)


def purge_dead_letters(client: Client, out: Output, args: argparse.Namespace) -> int:
    filters = _dead_letter_filters(args)

    def purge(dry_run: bool) -> Bulk:
        return client.purge_dead_letters(dry_run=dry_run, **filters)

    return _bulk(out, args, ("purge", "purged"), purge)


def _bulk(out: Output, args: argparse.Namespace, verbs: tuple[str, str], call: Callable[[bool], Bulk]) -> int:
    """A bulk operation: with --dry-run only its count; else, unless --yes, the count first and a
    question on the terminal (refused when stdin is not one: nobody could answer)."""
    if not (args.dry_run or args.yes):
        if not sys.stdin.isatty():
            warn(f"{verbs[0]}-dead-letters changes every dead letter that matches: add --yes (or --dry-run first)")
            return EXIT_USAGE
        matching = call(True)
        if not matching.count:
            out.bulk(matching, verbs, dry_run=True)
            return EXIT_OK
        print(f"{verbs[0]} {matching.count} dead letter(s)? [y/N] ", end="", file=sys.stderr, flush=True)
        if input().strip().lower() not in ("y", "yes"):
            warn("nothing changed")
            return EXIT_OK
    out.bulk(call(args.dry_run), verbs, dry_run=args.dry_run)
    return EXIT_OK


def _joined(pages: Iterator[_Page], *, follow: bool) -> _Page:
    """The first of ``pages``, and with ``follow`` every page after it, as one response."""
    result = next(pages)
    for page in pages if follow else ():
        result.missions.extend(page.missions)
        result.next_page_token = page.next_page_token
    return result


@_by_id
def cancel(client: Client, out: Output, args: argparse.Namespace) -> int:
    out.mission(pb.CancelMissionResponse(mission=client.cancel(args.id, args.reason or "")))
    return EXIT_OK


@_by_id
def redrive(client: Client, out: Output, args: argparse.Namespace) -> int:
    out.mission(pb.RedriveMissionResponse(mission=client.redrive(args.id, args.max_attempts or 0)))
    return EXIT_OK


def workers(client: Client, out: Output, args: argparse.Namespace) -> int:
    out.workers(pb.ListWorkersResponse(workers=client.workers(include_gone=args.all)))
    return EXIT_OK


def stats(client: Client, out: Output, args: argparse.Namespace) -> int:
    out.stats(client.stats())
    return EXIT_OK


def watch(client: Client, out: Output, args: argparse.Namespace) -> int:
    filters = WatchFilters(
        mission_ids=args.mission or (),
        types=[enums.value(enums.EVENT, kind) for kind in args.type or ()],
        mission_types=args.mission_type or (),
        labels=dict(args.label or ()),
    )
    if args.after is not None:
        filters["after_sequence"] = args.after
    last: int | None = None

    def shown(events: Iterable[events_pb2.MissionEvent]) -> Iterator[events_pb2.MissionEvent]:
        nonlocal last
        for event in events:
            yield event
            last = event.sequence

    table = out.live and not args.plain
    seeds: list[mission_pb2.Mission] = []
    if table and args.after is None and not args.mission:
        seeds, after = _seeds(client, args, rows_shown(out.console.size.height))
        if after:
            filters["after_sequence"] = after
    try:
        # The client resumes a cut stream by itself; what reaches here is an error it gave up on.
        events = shown(client.watch(**filters))
        if table:
            _live_table(out.console, seeds, events)
        else:
            for event in events:
                out.event(event)
    except KeyboardInterrupt:
        return EXIT_OK
    except errors.ServiceError as exc:
        resume = _resume_point(exc, last)
        if resume is not None:
            exc.add_note(f"resume with --after {resume}")
        raise
    return EXIT_OK


def _resume_point(exc: errors.ServiceError, last: int | None) -> int | None:
    """Where to resume a watch given up on: the service's last delivered sequence (it also counts
    what the filters skipped), else the last event printed."""
    if "last_sequence" in exc.metadata:
        return max(int(exc.metadata["last_sequence"]), last or 0)
    return last


def _seeds(client: Client, args: argparse.Namespace, rows: int) -> tuple[list[mission_pb2.Mission], int]:
    """The missions a watch's table starts with, oldest first: those not final yet, then the most
    recent final ones to fill the screen's ``rows``, as the watch's filters keep them; and the
    sequence to follow the log after so that nothing since the listings is missed (0: live)."""
    try:
        # Taken before the listings: the stream then replays what happened meanwhile, and the
        # table skips what a listed mission already shows (its last_sequence).
        after = client.stats().last_sequence
    except errors.ServiceError:
        after = 0  # GetStats needs the operator role; the listings say where they stand
    unfinished = _unfinished(client, args)
    recent = _recent_final(client, args, min(rows, CAPACITY) - len(unfinished))
    # A mission listed unfinished may have ended by the second listing: its later copy wins.
    found = {mission.id: mission for mission in (*unfinished, *recent)}
    seeds = sorted(found.values(), key=_created)
    # Without GetStats, the newest change the first listing shows: a later listing's could be
    # past changes of the missions the first one listed (their rows would miss them).
    listed = unfinished or recent
    return seeds, after or max((mission.last_sequence for mission in listed), default=0)


def _unfinished(client: Client, args: argparse.Namespace) -> list[mission_pb2.Mission]:
    """The missions not final yet that the watch's filters keep, oldest first, at most as many as
    the table holds. The service finds them by state; the filters apply here, as a type filter
    would have it read the type's whole history for the few missions not final."""
    watched = (mission for mission in client.list(states=_UNFINISHED) if _watched(mission, args))
    return list(itertools.islice(watched, CAPACITY))


def _recent_final(client: Client, args: argparse.Namespace, count: int) -> list[mission_pb2.Mission]:
    """The ``count`` most recently created final missions that the watch's filters keep, oldest
    first. Listed newest first in any state, so that the service walks back from the newest
    (a filter of the three final states would have it sort every final mission first)."""
    if count <= 0:
        return []
    found: list[mission_pb2.Mission] = []
    for mission_type in dict.fromkeys(args.mission_type or [""]):
        listed = client.list(type=mission_type, labels=dict(args.label or ()), page_size=count, newest_first=True)
        found += itertools.islice((mission for mission in listed if mission.state in TERMINAL_STATES), count)
    newest = sorted(found, key=_created, reverse=True)[:count]  # stable: the service's order for a tie
    return newest[::-1]


def _created(mission: mission_pb2.Mission) -> int:
    return int(mission.create_time.ToNanoseconds())


def _watched(mission: mission_pb2.Mission, args: argparse.Namespace) -> bool:
    """Whether the watch's --mission-type and --label filters keep ``mission``."""
    if args.mission_type and mission.type not in args.mission_type:
        return False
    return all(mission.labels.get(key) == value for key, value in args.label or ())


def _live_table(
    console: Console, seeds: Iterable[mission_pb2.Mission], events: Iterable[events_pb2.MissionEvent]
) -> None:
    """The ``seeds``, then a new frame after each event, drawn a few times a second; the last one
    stays on the screen."""
    board = MissionBoard()
    for mission in seeds:
        board.seed(mission)
    with Live(board.render(*console.size), console=console, refresh_per_second=8) as live:
        for event in events:
            board.apply(event)
            live.update(board.render(*console.size))


def submit(client: Client, out: Output, args: argparse.Namespace) -> int:
    mission = client.submit(
        args.type,
        None if args.payload is None else struct_to_dict(args.payload),
        correlation_id=uuid.uuid4().hex,
        # A flag not given is None, which leaves the field to the service's default.
        priority=args.priority,
        labels=dict(args.label or ()),
        idempotency_key=args.idempotency_key or "",
        max_attempts=args.max_attempts or 0,
        timeout=args.timeout_s,
        delay=args.delay,
        due_time=args.due_time,
    )
    response = pb.SubmitMissionResponse(mission=mission)
    if not args.wait:
        out.mission(response)
        return EXIT_OK
    if out.json:
        out.message(response)
    else:
        out.console.print(f"submitted mission {mission.id}", soft_wrap=True)
    _warn_without_worker(client, mission)
    return _wait(client, out, mission, bar=out.live and not args.plain)


def _warn_without_worker(client: Client, mission: mission_pb2.Mission) -> None:
    """Say on stderr when no live worker handles a waiting mission's type: else the wait looks hung."""
    if mission.state not in _WAITING:
        return
    try:
        listed = client.workers()
    except errors.ServiceError:
        return  # advice only: a token with just the submitter role may not list workers
    if not any(
        worker.state == worker_pb2.WORKER_STATE_ACTIVE and mission.type in worker.handler_types for worker in listed
    ):
        warn(
            f"missionctl: no live worker handles mission type {mission.type!r};"
            " the mission stays queued until one starts"
        )


def _wait(client: Client, out: Output, mission: mission_pb2.Mission, *, bar: bool) -> int:
    """Follow the mission's events (its history first) until its final one, then print it; 0
    only if it SUCCEEDED. The submission's answer may show it finished already (a quick
    worker): the history still shows how."""
    events = client.watch(mission_ids=[mission.id])
    try:
        if bar:
            _progress_bar(out.console, mission, events)
        else:
            for event in events:
                out.event(event)
    except KeyboardInterrupt:
        warn(f"interrupted; mission {mission.id} goes on: missionctl watch --mission {mission.id}")
        return EXIT_INTERRUPTED
    except errors.OutOfRangeError:
        if mission.state not in TERMINAL_STATES:
            raise
        # An idempotent resubmission of a mission that ended before the log's retention.
    final = client.wait(mission.id)
    out.mission(pb.GetMissionResponse(mission=final))
    if final.state == mission_pb2.MISSION_STATE_SUCCEEDED:
        return EXIT_OK
    warn(f"mission {mission.id} did not succeed: {enums.short(enums.STATE, final.state)}")
    return EXIT_MISSION_UNSUCCESSFUL


def _progress_bar(console: Console, mission: mission_pb2.Mission, events: Iterable[events_pb2.MissionEvent]) -> None:
    """A progress bar driven by PROGRESS events; other events print as lines above it."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(escape(f"{mission.type} queued"), total=1.0)
        for event in events:
            kind = enums.short(enums.EVENT, event.type)
            if event.type == events_pb2.EVENT_TYPE_PROGRESS:
                note = f"{mission.type} {event.progress.message}"[:40]
                progress.update(task, completed=event.progress.fraction, description=escape(note))
                continue
            progress.console.print(event_line(event), soft_wrap=True)
            if event.type == events_pb2.EVENT_TYPE_STARTED:
                progress.reset(task, description=escape(f"{mission.type} attempt {event.attempt}"))
            elif event.type == events_pb2.EVENT_TYPE_COMPLETED:
                progress.update(task, completed=1.0, description=escape(f"{mission.type} {kind.lower()}"))
            else:
                progress.update(task, description=escape(f"{mission.type} {kind.lower()}"))
