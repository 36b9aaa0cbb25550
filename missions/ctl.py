"""`missionctl`: the command-line client of MissionService (synchronous gRPC).

Usage::

    missionctl [--server HOST:PORT] [-o {text,json}] [--timeout SECONDS] COMMAND ...

Commands: ``submit``, ``get``, ``list``, ``cancel`` and ``watch``; ``missionctl COMMAND
--help`` describes each. ``--server`` defaults to ``$MISSIONS_SERVER``, else 127.0.0.1:50051.

Output: ``-o text`` (the default) renders with rich; colours are off when stdout is not a
terminal or ``NO_COLOR`` is set. ``-o json`` prints each response message in proto JSON
(field names as in the .proto), one compact object per line: ``{"mission": ...}`` for
submit, get and cancel, ``{"missions": [...], "next_page_token": ...}`` for list (a single
object holding every page with ``--all``) and ``{"event": ...}`` per event for watch and
``submit --wait``.

Exit codes:
    0       success, including ``watch`` stopped with Ctrl-C.
    1       ``submit --wait``: the mission did not succeed (FAILED or CANCELLED).
    2       usage error: a bad flag or value, e.g. a --payload that is not a JSON object.
    3 + N   an RPC failed with gRPC status code N, e.g. DEADLINE_EXCEEDED (4) -> 7,
            NOT_FOUND (5) -> 8, UNAVAILABLE (14) -> 17. ``error: <STATUS>: <details>``
            goes to stderr.
    130     interrupted with Ctrl-C (any command but ``watch``).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from missions.events import TERMINAL_STATES
from missions.settings import env
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2_grpc
from missions.v1 import mission_service_pb2 as pb

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

_V = TypeVar("_V", bound=int)

__all__ = ["main"]

DEFAULT_SERVER = "127.0.0.1:50051"
CORRELATION_KEY = "x-correlation-id"

EXIT_OK = 0
EXIT_MISSION_UNSUCCESSFUL = 1
EXIT_USAGE = 2
EXIT_RPC_BASE = 3
EXIT_INTERRUPTED = 130

_PIPE_WIDTH = 1000

ChannelFactory = Callable[[str], grpc.Channel]

_STATE = ("MISSION_STATE_", mission_pb2.MissionState)
_PRIORITY = ("PRIORITY_", mission_pb2.Priority)
_EVENT = ("EVENT_TYPE_", events_pb2.EventType)
_STYLES = {"SUCCEEDED": "green", "COMPLETED": "green", "FAILED": "red", "DEAD_LETTERED": "red", "CANCELLED": "yellow"}
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


# --- enums: CLI spells values in lower case without the prefix ("queued", "high") ---


def _choices(enum: tuple[str, _EnumTypeWrapper[Any]]) -> list[str]:
    prefix, wrapper = enum
    return [name.removeprefix(prefix).lower() for name, number in wrapper.items() if number != 0]


def _enum_value(enum: tuple[str, _EnumTypeWrapper[_V]], choice: str) -> _V:
    """The proto enum value for a CLI choice."""
    prefix, wrapper = enum
    return wrapper.Value(prefix + choice.upper())


def _short(enum: tuple[str, _EnumTypeWrapper[Any]], number: int) -> str:
    prefix, wrapper = enum
    try:
        return wrapper.Name(number).removeprefix(prefix)
    except ValueError:  # a value newer than this client
        return str(number)


# --- argument types: argparse turns ArgumentTypeError into a usage error (exit 2) ---


def _payload(text: str) -> struct_pb2.Struct:
    """--payload: a JSON object given inline, as @FILE, or as @- for stdin."""
    if text.startswith("@"):
        try:
            text = sys.stdin.read() if text == "@-" else pathlib.Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]!r}: {exc.strerror}") from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        kind = "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {kind}")
    payload = struct_pb2.Struct()
    payload.update(value)
    return payload


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _integer(minimum: int) -> Callable[[str], int]:
    """An argparse type for integers of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def _seconds_arg(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return number


# --- the service, with typed calls ---


class _Service:
    """Typed calls to MissionService over one channel; unary calls carry the --timeout deadline."""

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._stub = mission_service_pb2_grpc.MissionServiceStub(channel)
        self._timeout = timeout

    def get(self, mission_id: str) -> pb.GetMissionResponse:
        response: pb.GetMissionResponse = self._stub.GetMission(
            pb.GetMissionRequest(mission_id=mission_id), timeout=self._timeout
        )
        return response

    def list(self, request: pb.ListMissionsRequest) -> pb.ListMissionsResponse:
        response: pb.ListMissionsResponse = self._stub.ListMissions(request, timeout=self._timeout)
        return response

    def submit(self, request: pb.SubmitMissionRequest, correlation_id: str) -> pb.SubmitMissionResponse:
        response: pb.SubmitMissionResponse = self._stub.SubmitMission(
            request, timeout=self._timeout, metadata=((CORRELATION_KEY, correlation_id),)
        )
        return response

    def cancel(self, request: pb.CancelMissionRequest) -> pb.CancelMissionResponse:
        response: pb.CancelMissionResponse = self._stub.CancelMission(request, timeout=self._timeout)
        return response

    def watch(self, request: pb.WatchEventsRequest) -> Iterator[pb.WatchEventsResponse]:
        """The event stream, without a deadline; closing the channel cancels it."""
        responses: Iterator[pb.WatchEventsResponse] = self._stub.WatchEvents(request)
        return responses


# --- rendering ---


def _time(stamp: timestamp_pb2.Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _seconds(span: duration_pb2.Duration) -> str:
    return f"{span.ToTimedelta().total_seconds():g}s"


def _compact(struct: struct_pb2.Struct, limit: int = 0) -> str:
    text = json.dumps(_integral(json_format.MessageToDict(struct)), separators=(",", ":"), ensure_ascii=False)
    return text if not limit or len(text) <= limit else text[: limit - 1] + "…"


def _integral(value: Any) -> Any:
    """Struct numbers are doubles; show 3.0 as 3 again."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _error(error: mission_pb2.MissionError) -> str:
    return f"{error.type}: {error.message}" if error.type or error.message else ""


def _mission_rows(mission: mission_pb2.Mission) -> Iterator[tuple[str, str]]:
    yield "id", mission.id
    yield "type", mission.type
    yield "state", _short(_STATE, mission.state)
    yield "priority", _short(_PRIORITY, mission.priority)
    yield "attempt", f"{mission.attempt} of {mission.max_attempts}"
    if mission.progress or mission.progress_message:
        yield "progress", f"{mission.progress:.0%} {mission.progress_message}".rstrip()
    yield "worker", mission.worker_id
    yield "timeout", _seconds(mission.timeout) if mission.HasField("timeout") else ""
    yield "labels", ", ".join(f"{key}={value}" for key, value in sorted(mission.labels.items()))
    yield "idempotency key", mission.idempotency_key
    yield "payload", _compact(mission.payload)
    yield "result", _compact(mission.result) if mission.HasField("result") else ""
    yield "error", _error(mission.error) + (" (retryable)" if mission.error.retryable else "")
    for name in ("create", "start", "end", "update"):
        yield f"{name} time", _time(getattr(mission, f"{name}_time"))
    yield "last sequence", str(mission.last_sequence)


def _mission_view(mission: mission_pb2.Mission) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for key, value in _mission_rows(mission):
        if value:
            grid.add_row(key, Text(value, style=_STYLES.get(value, "")))
    return grid


def _missions_table(missions: Iterable[mission_pb2.Mission]) -> Table:
    missions = list(missions)
    table = Table(box=None, header_style="bold")
    # Ids are what users copy: never cut them, let the other columns give way.
    table.add_column("ID", no_wrap=True, min_width=max((len(mission.id) for mission in missions), default=2))
    for header in ("TYPE", "STATE", "PRIORITY", "ATTEMPT", "PROGRESS", "CREATED"):
        table.add_column(header)
    for mission in missions:
        state = _short(_STATE, mission.state)
        table.add_row(
            Text(mission.id, no_wrap=True),
            Text(mission.type),
            Text(state, style=_STYLES.get(state, "")),
            _short(_PRIORITY, mission.priority).lower(),
            f"{mission.attempt}/{mission.max_attempts}",
            f"{mission.progress:.0%}",
            _time(mission.create_time),
        )
    return table


def _event_details(event: events_pb2.MissionEvent) -> str:
    match event.WhichOneof("details"):
        case "created":
            mission = event.created.mission
            return f"{mission.type} priority={_short(_PRIORITY, mission.priority).lower()}"
        case "started":
            return f"attempt {event.attempt} on {event.started.worker_id}"
        case "progress":
            return f"{event.progress.fraction:.0%} {event.progress.message}".rstrip()
        case "completed":
            completed = event.completed
            return f"in {_seconds(completed.duration)} result={_compact(completed.result, 80)}"
        case "failed":
            retry = " (will retry)" if event.failed.will_retry else ""
            return f"attempt {event.attempt}: {_error(event.failed.error)}{retry}"
        case "retrying":
            return f"next attempt in {_seconds(event.retrying.delay)}"
        case "cancelled":
            by = f" by {event.cancelled.cancelled_by}" if event.cancelled.cancelled_by else ""
            return (event.cancelled.reason or "no reason given") + by
        case "dead_lettered":
            return f"{event.dead_lettered.reason}: {_error(event.dead_lettered.last_error)}"
    return ""


def _event_line(event: events_pb2.MissionEvent) -> Text:
    kind = _short(_EVENT, event.type)
    line = Text(f"{event.sequence:>6}  {_time(event.time) or '-'}  {event.mission_id}  ")
    line.append(f"{kind:<13}", style=_STYLES.get(kind, "cyan"))
    line.append(f" {_event_details(event)}")
    return line


class _Output:
    """Writes responses as rich text or as proto JSON lines (-o json)."""

    def __init__(self, json_lines: bool) -> None:
        # rich turns colour off when stdout is not a terminal or NO_COLOR is set.
        self.console = Console(highlight=False)
        if not self.console.is_terminal:
            # Piped output feeds tools and files: let tables be as wide as their content
            # instead of cutting ids to fit rich's default of 80 columns.
            self.console.width = _PIPE_WIDTH
        self.json = json_lines

    @property
    def live(self) -> bool:
        """Whether to draw live widgets (a progress bar): text output to a terminal."""
        return not self.json and self.console.is_terminal

    def message(self, message: Message) -> None:
        """Print one response message as a JSON line."""
        sys.stdout.write(json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True)) + "\n")
        sys.stdout.flush()

    def mission(self, response: pb.GetMissionResponse | pb.SubmitMissionResponse | pb.CancelMissionResponse) -> None:
        if self.json:
            self.message(response)
        else:
            self.console.print(_mission_view(response.mission))

    def missions(self, response: pb.ListMissionsResponse) -> None:
        if self.json:
            self.message(response)
            return
        if response.missions:
            self.console.print(_missions_table(response.missions))
        else:
            self.console.print("no missions")
        if response.next_page_token:
            _warn(f"more missions: add --page-token {response.next_page_token} (or --all)")

    def event(self, response: pb.WatchEventsResponse) -> None:
        if self.json:
            self.message(response)
        else:
            self.console.print(_event_line(response.event), soft_wrap=True)


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- commands: each takes the service, the output and the parsed flags ---

Command = Callable[[_Service, _Output, argparse.Namespace], int]


def _get(service: _Service, out: _Output, args: argparse.Namespace) -> int:
    out.mission(service.get(args.id))
    return EXIT_OK


def _list(service: _Service, out: _Output, args: argparse.Namespace) -> int:
    request = pb.ListMissionsRequest(
        page_size=args.page_size or 0,
        page_token=args.page_token or "",
        states=[_enum_value(_STATE, state) for state in args.state or ()],
        type=args.type or "",
    )
    page = service.list(request)
    result = pb.ListMissionsResponse()
    result.CopyFrom(page)
    while args.all and page.next_page_token:
        request = pb.ListMissionsRequest(
            page_size=request.page_size, page_token=page.next_page_token, states=request.states, type=request.type
        )
        page = service.list(request)
        result.missions.extend(page.missions)
        result.next_page_token = page.next_page_token
    out.missions(result)
    return EXIT_OK


def _cancel(service: _Service, out: _Output, args: argparse.Namespace) -> int:
    out.mission(service.cancel(pb.CancelMissionRequest(mission_id=args.id, reason=args.reason or "")))
    return EXIT_OK


def _watch(service: _Service, out: _Output, args: argparse.Namespace) -> int:
    request = pb.WatchEventsRequest(
        mission_ids=args.mission or (), types=[_enum_value(_EVENT, kind) for kind in args.type or ()]
    )
    if args.after is not None:
        request.after_sequence = args.after
    last: int | None = None
    try:
        for response in service.watch(request):
            out.event(response)
            last = response.event.sequence
    except KeyboardInterrupt:
        return EXIT_OK
    except grpc.RpcError as exc:
        if last is not None:
            exc.add_note(f"resume with --after {last}")
        raise
    return EXIT_OK


def _submission(args: argparse.Namespace) -> pb.SubmitMissionRequest:
    request = pb.SubmitMissionRequest(
        type=args.type,
        priority=_enum_value(_PRIORITY, args.priority) if args.priority else mission_pb2.PRIORITY_UNSPECIFIED,
        max_attempts=args.max_attempts or 0,
        idempotency_key=args.idempotency_key or "",
        labels=dict(args.label or ()),
    )
    if args.payload is not None:
        request.payload.CopyFrom(args.payload)
    if args.timeout_s is not None:
        request.timeout.FromTimedelta(timedelta(seconds=args.timeout_s))
    return request


def _submit(service: _Service, out: _Output, args: argparse.Namespace) -> int:
    response = service.submit(_submission(args), correlation_id=uuid.uuid4().hex)
    if not args.wait:
        out.mission(response)
        return EXIT_OK
    if out.json:
        out.message(response)
    else:
        out.console.print(f"submitted mission {response.mission.id}", soft_wrap=True)
    return _wait(service, out, response.mission)


def _wait(service: _Service, out: _Output, mission: mission_pb2.Mission) -> int:
    """Follow the mission's events until its final one, then print it; 0 only if it SUCCEEDED."""
    # An idempotent resubmission may return a mission that finished long ago: nothing to follow.
    events = () if mission.state in TERMINAL_STATES else service.watch(pb.WatchEventsRequest(mission_ids=[mission.id]))
    try:
        if out.live:
            _progress_bar(out.console, mission, events)
        else:
            for response in events:
                out.event(response)
    except KeyboardInterrupt:
        _warn(f"interrupted; mission {mission.id} goes on: missionctl watch --mission {mission.id}")
        return EXIT_INTERRUPTED
    final = service.get(mission.id)
    out.mission(final)
    if final.mission.state == mission_pb2.MISSION_STATE_SUCCEEDED:
        return EXIT_OK
    _warn(f"mission {mission.id} did not succeed: {_short(_STATE, final.mission.state)}")
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
            kind = _short(_EVENT, event.type)
            if event.type == events_pb2.EVENT_TYPE_PROGRESS:
                note = f"{mission.type} {event.progress.message}"[:40]
                progress.update(task, completed=event.progress.fraction, description=escape(note))
                continue
            progress.console.print(_event_line(event), soft_wrap=True)
            if event.type == events_pb2.EVENT_TYPE_STARTED:
                progress.reset(task, description=escape(f"{mission.type} attempt {event.attempt}"))
            elif event.type == events_pb2.EVENT_TYPE_COMPLETED:
                progress.update(task, completed=1.0, description=escape(f"{mission.type} {kind.lower()}"))
            else:
                progress.update(task, description=escape(f"{mission.type} {kind.lower()}"))


# --- the parser ---


def _add_submit(add: Callable[..., argparse.ArgumentParser]) -> None:
    submit = add("submit", help="queue a mission", description="Queue a mission.")
    submit.add_argument("type", metavar="TYPE", help="handler name, e.g. echo")
    submit.add_argument(
        "--payload", type=_payload, metavar="JSON", help="a JSON object, inline or @FILE (@- for stdin); default {}"
    )
    submit.add_argument("--priority", choices=_choices(_PRIORITY), help="default: normal")
    submit.add_argument("--max-attempts", type=_integer(1), metavar="N", help="default: the service's (3)")
    submit.add_argument(
        "--timeout-s", type=_seconds_arg, metavar="SECONDS", help="time allowed per attempt; default: the worker's"
    )
    submit.add_argument(
        "--idempotency-key", metavar="K", help="resubmitting with the same key returns the same mission"
    )
    submit.add_argument(
        "--label", type=_label, action="append", metavar="KEY=VALUE", help="repeatable; the last value of a key wins"
    )
    submit.add_argument(
        "--wait", action="store_true", help="follow the mission to its end; exit 0 if it succeeded, else 1"
    )
    submit.set_defaults(command=_submit)


def _add_queries(add: Callable[..., argparse.ArgumentParser]) -> None:
    get = add("get", help="show one mission", description="Show one mission.")
    get.add_argument("id", metavar="ID")
    get.set_defaults(command=_get)
    listing = add("list", help="list missions, oldest first", description="List missions, oldest first.")
    listing.add_argument("--state", choices=_choices(_STATE), action="append", help="repeatable; default: every state")
    listing.add_argument("--type", metavar="T", help="only missions of this handler type")
    listing.add_argument("--page-size", type=_integer(1), metavar="N", help="default: the service's (100)")
    listing.add_argument("--page-token", metavar="TOKEN", help="continue from a previous page")
    listing.add_argument("--all", action="store_true", help="follow next_page_token to the last page")
    listing.set_defaults(command=_list)
    cancel = add("cancel", help="cancel a mission", description="Cancel a mission.")
    cancel.add_argument("id", metavar="ID")
    cancel.add_argument("--reason", metavar="R", help="recorded on the CANCELLED event")
    cancel.set_defaults(command=_cancel)


def _add_watch(add: Callable[..., argparse.ArgumentParser]) -> None:
    watch = add(
        "watch",
        help="stream mission events",
        description="Stream mission events until the stream ends (all watched missions finished) or Ctrl-C.",
    )
    watch.add_argument("--mission", metavar="ID", action="append", help="repeatable; default: every mission")
    watch.add_argument("--type", choices=_choices(_EVENT), action="append", help="repeatable; default: every type")
    watch.add_argument(
        "--after",
        type=_integer(0),
        metavar="N",
        help="replay events after sequence N first (0: the whole retained log); default: live only,"
        " or every past event of the --mission ids",
    )
    watch.set_defaults(command=_watch)


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--server, -o and --timeout; without ``defaults`` an absent flag leaves the value alone."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--server",
        default=default(env("SERVER", DEFAULT_SERVER)),
        metavar="HOST:PORT",
        help=f"mission-service address [MISSIONS_SERVER, default {DEFAULT_SERVER}]",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default=default("text"), help="default: text")
    parser.add_argument(
        "--timeout",
        type=_seconds_arg,
        default=default(10.0),
        metavar="SECONDS",
        help="deadline of each unary RPC; default 10",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="missionctl",
        description="Command-line client of MissionService.",
        epilog="exit codes: 0 ok, 1 mission did not succeed (submit --wait), 2 usage error,"
        " 3+N RPC failed with gRPC status code N, 130 interrupted",
    )
    _add_global_options(parser, defaults=True)
    # Every command accepts the global options too, so `missionctl get ID -o json` works.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, defaults=False)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    add = functools.partial(commands.add_parser, parents=[common])
    _add_submit(add)
    _add_queries(add)
    _add_watch(add)
    return parser


def _rpc_failure(exc: grpc.RpcError) -> int:
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    _warn(f"error: {code.name}: {details}")
    for note in getattr(exc, "__notes__", ()):
        _warn(f"hint: {note}")
    number: int = code.value[0]
    return EXIT_RPC_BASE + number


def main(argv: list[str] | None = None, *, connect: ChannelFactory = grpc.insecure_channel) -> int:
    """Run missionctl with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    Args:
        argv: The arguments, without the program name.
        connect: Opens the channel to a ``HOST:PORT``; tests pass a grpc_testing channel.

    Returns:
        The exit code; the module docstring lists them.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error and 0 after --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Command = args.command
    out = _Output(json_lines=args.output == "json")
    try:
        with connect(args.server) as channel:
            return command(_Service(channel, args.timeout), out, args)
    except grpc.RpcError as exc:
        return _rpc_failure(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
