"""missionctl commands: each takes the service's client, the output and the parsed flags, and returns an exit code."""

from __future__ import annotations

import argparse
import functools
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import TypeVar

import grpc
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from missions.ctl import enums
from missions.ctl.board import CAPACITY, MissionBoard
from missions.ctl.client import ServiceClient
from missions.ctl.output import Output, warn
from missions.ctl.render import event_line
from missions.events import TERMINAL_STATES
from missions.metadata import LAST_SEQUENCE_KEY
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
    "redrive",
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

Command = Callable[[ServiceClient, Output, argparse.Namespace], int]

# Trailing metadata of a WatchEvents stream that ends with an error (mission_service/status.py).

# States of a mission that waits for a worker to take it.
_WAITING = frozenset({mission_pb2.MISSION_STATE_QUEUED, mission_pb2.MISSION_STATE_RETRYING})
# States of a mission not final yet: a watch's table starts with them.
_UNFINISHED = (*_WAITING, mission_pb2.MISSION_STATE_RUNNING)

# An argument that may be the leading part of a mission id (a UUID of 36 characters).
_ID_PREFIX = re.compile(r"[0-9A-Fa-f-]{8,35}")
# Matches shown for an ambiguous prefix.
_SHOWN_MATCHES = 10

# The two paged listings share their paging fields.
_PageRequest = TypeVar("_PageRequest", pb.ListMissionsRequest, pb.ListDeadLettersRequest)
_Page = TypeVar("_Page", pb.ListMissionsResponse, pb.ListDeadLettersResponse)


class _Unresolved(Exception):
    """An id prefix that names no mission, or more than one; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _full_id(client: ServiceClient, given: str) -> str:
    """The mission id ``given`` names: itself, or the one id it is a unique prefix of (8 or more
    hex digits and dashes); else _Unresolved."""
    if not _ID_PREFIX.fullmatch(given):
        return given
    found = client.list(pb.ListMissionsRequest(id_prefix=given, page_size=_SHOWN_MATCHES + 1)).missions
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
    def run(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
        try:
            args.id = _full_id(client, args.id)
        except _Unresolved as exc:
            warn(str(exc))
            return exc.code
        return command(client, out, args)

    return run


@_by_id
def get(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
    out.mission(client.get(args.id))
    return EXIT_OK


def list_missions(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
    request = pb.ListMissionsRequest(
        page_size=args.page_size or 0,
        page_token=args.page_token or "",
        states=[enums.value(enums.STATE, state) for state in args.state or ()],
        type=args.type or "",
        label_selector=_selector(args.label),
    )
    for bound, instant in (
        ("min_create_time", args.created_after),
        ("max_create_time", args.created_before),
        ("min_end_time", args.ended_after),
        ("max_end_time", args.ended_before),
    ):
        if instant is not None:
            getattr(request, bound).FromDatetime(instant)
    out.missions(_pages(client.list, request, follow=args.all))
    return EXIT_OK


def _selector(labels: Iterable[tuple[str, str]] | None) -> str:
    """--label KEY=VALUE flags as a label selector."""
    return ",".join(f"{key}={value}" for key, value in labels or ())


def dead_letters(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
    request = pb.ListDeadLettersRequest(
        page_size=args.page_size or 0, page_token=args.page_token or "", type=args.type or ""
    )
    out.missions(_pages(client.dead_letters, request, follow=args.all), last_error=True)
    return EXIT_OK


def _pages(fetch: Callable[[_PageRequest], _Page], request: _PageRequest, *, follow: bool) -> _Page:
    """The page ``request`` asks for, and with ``follow`` every page after it, as one response."""
    pages = _each_page(fetch, request)
    result = next(pages)
    for page in pages if follow else ():
        result.missions.extend(page.missions)
        result.next_page_token = page.next_page_token
    return result


def _each_page(fetch: Callable[[_PageRequest], _Page], request: _PageRequest) -> Iterator[_Page]:
    """The page ``request`` asks for, then the following ones as they are asked for."""
    while True:
        page = fetch(request)
        yield page
        if not page.next_page_token:
            return
        # A new request each time: the same filters, the next token.
        request = _with_token(request, page.next_page_token)


def _with_token(request: _PageRequest, page_token: str) -> _PageRequest:
    following = type(request)()
    following.CopyFrom(request)
    following.page_token = page_token
    return following


@_by_id
def cancel(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
    out.mission(client.cancel(pb.CancelMissionRequest(mission_id=args.id, reason=args.reason or "")))
    return EXIT_OK


@_by_id
def redrive(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
    out.mission(client.redrive(pb.RedriveMissionRequest(mission_id=args.id, max_attempts=args.max_attempts or 0)))
    return EXIT_OK


def workers(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
    out.workers(client.workers(pb.ListWorkersRequest(include_gone=args.all)))
    return EXIT_OK


def stats(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
    out.stats(client.stats())
    return EXIT_OK


def watch(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
    request = pb.WatchEventsRequest(
        mission_ids=args.mission or (),
        types=[enums.value(enums.EVENT, kind) for kind in args.type or ()],
        mission_types=args.mission_type or (),
        label_selector=_selector(args.label),
    )
    if args.after is not None:
        request.after_sequence = args.after
    last: int | None = None

    def shown(responses: Iterable[pb.WatchEventsResponse]) -> Iterator[pb.WatchEventsResponse]:
        nonlocal last
        for response in responses:
            yield response
            last = response.event.sequence

    table = out.live and not args.plain
    seeds: list[mission_pb2.Mission] = []
    if table and args.after is None and not args.mission:
        seeds, after = _unfinished(client, args)
        if after:
            request.after_sequence = after
    try:
        if table:
            _live_table(out.console, seeds, shown(client.watch(request)))
        else:
            for response in shown(client.watch(request)):
                out.event(response)
    except KeyboardInterrupt:
        return EXIT_OK
    except grpc.RpcError as exc:
        resume = _resume_point(exc, last)
        if resume is not None:
            exc.add_note(f"resume with --after {resume}")
        raise
    return EXIT_OK


def _resume_point(exc: grpc.RpcError, last: int | None) -> int | None:
    """Where to resume a cut stream: the service's last delivered sequence (it also counts what the
    filters skipped), else the last event printed."""
    trailers = exc.trailing_metadata() if isinstance(exc, grpc.Call) else None
    for key, value in trailers or ():
        if key == LAST_SEQUENCE_KEY and str(value).isdigit():
            return max(int(value), last or 0)
    return last


def _unfinished(client: ServiceClient, args: argparse.Namespace) -> tuple[list[mission_pb2.Mission], int]:
    """The missions not final yet that the watch's filters keep, at most as many as the table holds,
    and the sequence to follow the log after so that nothing since the listing is missed (0: live)."""
    try:
        # Taken before the listing: the stream then replays what happened meanwhile, and the
        # table skips what a listed mission already shows (its last_sequence).
        after = client.stats().last_sequence
    except grpc.RpcError:
        after = 0  # GetStats needs the operator role; the listing says where it stands
    found: list[mission_pb2.Mission] = []
    for page in _each_page(client.list, pb.ListMissionsRequest(states=_UNFINISHED)):
        found += (mission for mission in page.missions if _watched(mission, args))
        if len(found) >= CAPACITY:
            break
    return found[:CAPACITY], after or max((mission.last_sequence for mission in found), default=0)


def _watched(mission: mission_pb2.Mission, args: argparse.Namespace) -> bool:
    """Whether the watch's --mission-type and --label filters keep ``mission``."""
    if args.mission_type and mission.type not in args.mission_type:
        return False
    return all(mission.labels.get(key) == value for key, value in args.label or ())


def _live_table(
    console: Console, seeds: Iterable[mission_pb2.Mission], responses: Iterable[pb.WatchEventsResponse]
) -> None:
    """The ``seeds``, then a new frame after each event, drawn a few times a second; the last one
    stays on the screen."""
    board = MissionBoard()
    for mission in seeds:
        board.seed(mission)
    with Live(board.render(*console.size), console=console, refresh_per_second=8) as live:
        for response in responses:
            board.apply(response.event)
            live.update(board.render(*console.size))


def _submission(args: argparse.Namespace) -> pb.SubmitMissionRequest:
    request = pb.SubmitMissionRequest(
        type=args.type,
        priority=enums.value(enums.PRIORITY, args.priority) if args.priority else mission_pb2.PRIORITY_UNSPECIFIED,
        max_attempts=args.max_attempts or 0,
        idempotency_key=args.idempotency_key or "",
        labels=dict(args.label or ()),
    )
    if args.payload is not None:
        request.payload.CopyFrom(args.payload)
    if args.timeout_s is not None:
        request.timeout.FromTimedelta(timedelta(seconds=args.timeout_s))
    return request


def submit(client: ServiceClient, out: Output, args: argparse.Namespace) -> int:
    response = client.submit(_submission(args), correlation_id=uuid.uuid4().hex)
    if not args.wait:
        out.mission(response)
        return EXIT_OK
    if out.json:
        out.message(response)
    else:
        out.console.print(f"submitted mission {response.mission.id}", soft_wrap=True)
    _warn_without_worker(client, response.mission)
    return _wait(client, out, response.mission, bar=out.live and not args.plain)


def _warn_without_worker(client: ServiceClient, mission: mission_pb2.Mission) -> None:
    """Say on stderr when no live worker handles a waiting mission's type: else the wait looks hung."""
    if mission.state not in _WAITING:
        return
    try:
        listed = client.workers(pb.ListWorkersRequest())
    except grpc.RpcError:
        return  # advice only: a token with just the submitter role may not list workers
    if not any(
        worker.state == worker_pb2.WORKER_STATE_ACTIVE and mission.type in worker.handler_types
        for worker in listed.workers
    ):
        warn(
            f"missionctl: no live worker handles mission type {mission.type!r};"
            " the mission stays queued until one starts"
        )


def _wait(client: ServiceClient, out: Output, mission: mission_pb2.Mission, *, bar: bool) -> int:
    """Follow the mission's events until its final one, then print it; 0 only if it SUCCEEDED."""
    # An idempotent resubmission may return a mission that finished long ago: nothing to follow.
    events = () if mission.state in TERMINAL_STATES else client.watch(pb.WatchEventsRequest(mission_ids=[mission.id]))
    try:
        if bar:
            _progress_bar(out.console, mission, events)
        else:
            for response in events:
                out.event(response)
    except KeyboardInterrupt:
        warn(f"interrupted; mission {mission.id} goes on: missionctl watch --mission {mission.id}")
        return EXIT_INTERRUPTED
    final = client.get(mission.id)
    out.mission(final)
    if final.mission.state == mission_pb2.MISSION_STATE_SUCCEEDED:
        return EXIT_OK
    warn(f"mission {mission.id} did not succeed: {enums.short(enums.STATE, final.mission.state)}")
    return EXIT_MISSION_UNSUCCESSFUL


def _progress_bar(console: Console, mission: mission_pb2.Mission, events: Iterable[pb.WatchEventsResponse]) -> None:
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
        for response in events:
            event = response.event
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
