"""missionctl's command line: flag types, the global options and one sub-parser per command."""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import re
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import struct_pb2

from missions.client._settings import CONFIG_VARIABLE, OPTIONS, PROFILE_VARIABLE, NotGiven, positive_seconds
from missions.ctl import commands, completion, enums, schedules, top
from missions.options import Option, argument_type, boolean, integer, variable

__all__ = ["build_parser"]

_CONFIG_HELP = "$XDG_CONFIG_HOME/missions/missionctl.toml, else ~/.config/missions/missionctl.toml"
_EPILOG = """\
examples:
  missionctl submit echo --payload '{"hello": "world"}' --wait
  missionctl watch                 a live table of every mission's state and progress
  missionctl top                   workers, queue depth and throughput, refreshed
  missionctl list --state failed -o jsonl | jq -r .mission.id
  missionctl COMMAND --help        the options of one command

settings:
  each global option comes from its flag, else its MISSIONS_* variable, else the
  config file, else its default. The config file is TOML, by default
  $XDG_CONFIG_HOME/missions/missionctl.toml (else ~/.config/missions/missionctl.toml);
  its keys are the long flag names, e.g. server = "missions.internal:50051", and
  --profile NAME applies its [profiles.NAME] table on top. See docs/missionctl.md.

exit codes:
  0    success; watch and top also when stopped with Ctrl-C
  1    submit --wait: the mission did not succeed (FAILED or CANCELLED)
  2    usage error: a bad flag, variable or config file, or an ambiguous id prefix
  3+N  an RPC failed with gRPC status code N, e.g. 8 NOT_FOUND, 17 UNAVAILABLE
  130  interrupted with Ctrl-C
  141  stdout's reader went away (missionctl list | head -1), quietly, like a process
       stopped by SIGPIPE
"""

_ID_HELP = "the mission's id, or a unique prefix of it of 8 or more characters"

_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}

_SECONDS = argument_type(positive_seconds)

_Add = Callable[..., argparse.ArgumentParser]


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


_AGO = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _instant(text: str) -> datetime:
    """--created-after and the like: an ISO-8601 time (without an offset: local time), or a
    span ago such as 90s, 30m, 1h or 2d."""
    if ago := _AGO.fullmatch(text.strip()):
        return datetime.now(UTC) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time (2026-01-31T09:00, offset optional) or a span ago (30m, 1h, 2d), got {text!r}"
        ) from None


def _delay(text: str) -> timedelta:
    """--delay: a span such as 90s, 30m, 1h or 2d."""
    if span := _AGO.fullmatch(text.strip()):
        return timedelta(**{_UNITS[span[2]]: int(span[1])})
    raise argparse.ArgumentTypeError(f"expected a span such as 90s, 30m, 1h or 2d, got {text!r}")


def _due_time(text: str) -> datetime:
    """--due-time: an ISO-8601 time; without an offset, local time."""
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time (2026-12-08T10:00:00Z, offset optional), got {text!r}"
        ) from None


# --- the commands ---


def _command(
    add: _Add, name: str, summary: str, description: str, examples: tuple[str, ...], heading: str = "examples"
) -> argparse.ArgumentParser:
    """A sub-command whose --help shows ``description`` and then the ``examples``, one per line."""
    lines = "\n".join(f"  {line}" for line in examples)
    return add(name, help=summary, description=f"{description}\n\n{heading}:\n{lines}")


def _add_submit(add: _Add) -> None:
    submit = add(
        "submit",
        help="queue a mission",
        description="Queue a mission and print it; with --wait, follow it to its end.\n\n"
        "examples:\n"
        '  missionctl submit echo --payload \'{"hello": "world"}\' --wait\n'
        "  missionctl submit sleep --payload @job.json --priority high --label team=ops\n"
        "  missionctl submit echo --idempotency-key order-42 -o json\n"
        "  missionctl submit echo --delay 10s\n"
        "  missionctl submit report --due-time 2026-12-08T10:00:00Z",
    )
    submit.add_argument("type", metavar="TYPE", help="handler name, e.g. echo")
    submit.add_argument(
        "--payload", type=_payload, metavar="JSON", help="a JSON object, inline or @FILE (@- for stdin); default {}"
    )
    submit.add_argument(
        "--priority", type=str.lower, choices=enums.choices(enums.PRIORITY), help="any case; default: normal"
    )
    submit.add_argument(
        "--max-attempts", type=argument_type(integer(1)), metavar="N", help="default: the service's (3)"
    )
    submit.add_argument(
        "--timeout-s", type=_SECONDS, metavar="SECONDS", help="time allowed per attempt; default: the worker's"
    )
    submit.add_argument(
        "--delay",
        type=_delay,
        metavar="SPAN",
        help="start no earlier than this long from now (90s, 30m, 1h, 2d); SCHEDULED until then; default: at once",
    )
    submit.add_argument(
        "--due-time",
        type=_due_time,
        metavar="TIME",
        help="start no earlier than this ISO-8601 time (local without an offset); default: at once",
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="K",
        help="resubmitting with the same key returns the same mission; default: none",
    )
    submit.add_argument(
        "--label",
        type=_label,
        action="append",
        metavar="KEY=VALUE",
        help="repeatable; the last value of a key wins; default: none",
    )
    submit.add_argument(
        "--wait",
        action="store_true",
        help="follow the mission to its end (a progress bar on a terminal, else one line per event);"
        " exit 0 if it succeeded, else 1",
    )
    _add_plain(submit, "with --wait, one line per event instead of the progress bar")
    submit.set_defaults(command=commands.submit)


def _add_plain(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--plain", action="store_true", help=f"{what} (the default when stdout is not a terminal)")


def _add_paging(listing: argparse.ArgumentParser) -> None:
    """--type and the paging flags that ``list`` and ``dead-letters`` share."""
    listing.add_argument("--type", metavar="T", help="only missions of this handler type; default: every type")
    listing.add_argument(
        "--page-size", type=argument_type(integer(1)), metavar="N", help="default: the service's (100)"
    )
    listing.add_argument("--page-token", metavar="TOKEN", help="continue from a previous page; default: the first")
    listing.add_argument("--all", action="store_true", help="follow next_page_token to the last page")


def _add_dead_letter_filter(parser: argparse.ArgumentParser) -> None:
    """--error-type and --label of the dead-letter commands (each has --type already)."""
    parser.add_argument(
        "--error-type", metavar="E", help="only missions whose last error has this type; default: every error"
    )
    _add_label(parser)


def _add_label(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--label",
        type=_label,
        action="append",
        metavar="KEY=VALUE",
        help="only missions with every such label; repeatable; default: any labels",
    )


def _add_max_attempts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-attempts",
        type=argument_type(integer(1)),
        metavar="N",
        help="attempt budget (at most 100); default: the original",
    )


def _add_bulk(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only count and name the missions; change nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask first (needed when stdin is not a terminal)")


def _add_queries(add: _Add) -> None:
    get = add("get", help="show one mission", description="Show one mission.")
    get.add_argument("id", metavar="ID", help=_ID_HELP)
    get.set_defaults(command=commands.get)
    listing = _command(
        add,
        "list",
        "list missions, oldest first (or newest first)",
        "List missions, oldest first (--newest-first: the most recent first), a page at a time (--all for every page).",
        (
            "missionctl list --state running --state retrying",
            "missionctl list --state failed --type resize --all -o jsonl | jq -r .mission.id",
            "missionctl list --label team=ops --ended-after 1h",
            "missionctl list --newest-first --page-size 10",
        ),
    )
    listing.add_argument(
        "--state",
        type=str.lower,  # every output prints states in upper case
        choices=enums.choices(enums.STATE),
        action="append",
        metavar="STATE",
        help=f"only missions in this state ({', '.join(enums.choices(enums.STATE))}, in any case); repeatable;"
        " default: all",
    )
    _add_label(listing)
    for flag, what in (
        ("--created-after", "created at or after"),
        ("--created-before", "created before"),
        ("--ended-after", "finished at or after"),
        ("--ended-before", "finished before"),
    ):
        listing.add_argument(
            flag,
            type=_instant,
            metavar="TIME",
            help=f"only missions {what} TIME: ISO-8601 (local time without an offset) or a span ago"
            " (30s, 15m, 1h, 2d); default: unset",
        )
    listing.add_argument(
        "--newest-first", action="store_true", help="the most recent missions first (by creation), not the oldest"
    )
    _add_paging(listing)
    listing.set_defaults(command=commands.list_missions)
    cancel = add("cancel", help="cancel a mission", description="Cancel a mission.")
    cancel.add_argument("id", metavar="ID", help=_ID_HELP)
    cancel.add_argument("--reason", metavar="R", help="recorded on the CANCELLED event; default: none")
    cancel.set_defaults(command=commands.cancel)


def _add_watch(add: _Add) -> None:
    watch = _command(
        add,
        "watch",
        "watch missions live: a table of states and progress, or one line per event",
        "Watch mission events until the stream ends (every watched --mission finished) or Ctrl-C. On a"
        " terminal, a live table keeps one row per mission (state, attempt, a progress bar and the last message"
        " or error; finished rows stay); without --mission or --after it starts with the missions not final yet"
        " (up to 1000) and the most recent final ones the screen has room for. With --plain, -o json/jsonl or"
        " when piped, one line per event, from now on.",
        (
            "missionctl watch                          the missions not final yet and the latest, then every change",
            "missionctl watch --mission ID             its history, then live; ends when it is final",
            "missionctl watch --after 0 --plain        the whole retained log, then live, one line per event",
            "missionctl watch --mission-type resize --label team=ops -o jsonl",
        ),
    )
    watch.add_argument("--mission", metavar="ID", action="append", help="repeatable; default: every mission")
    watch.add_argument(
        "--type",
        type=str.lower,
        choices=enums.choices(enums.EVENT),
        action="append",
        help="event type, in any case; repeatable; default: every type",
    )
    watch.add_argument("--mission-type", metavar="T", action="append", help="handler type; repeatable; default: all")
    watch.add_argument(
        "--label",
        type=_label,
        action="append",
        metavar="KEY=VALUE",
        help="missions with every such label; repeatable; default: any labels",
    )
    watch.add_argument(
        "--after",
        type=argument_type(integer(0)),
        metavar="N",
        help="replay events after sequence N first (0: the whole retained log); default: live only,"
        " or every past event of the --mission ids",
    )
    _add_plain(watch, "one line per event instead of the live table")
    watch.set_defaults(command=commands.watch)


def _add_top(add: _Add) -> None:
    top_parser = _command(
        add,
        "top",
        "live view of workers, queue depth and throughput",
        "Show workers (load, finished attempts and their rate), queue depths, missions per state and throughput"
        " (the change over about ten seconds), refreshed every --interval seconds until Ctrl-C. With --once,"
        " print one frame and exit; with --plain or when piped, print frame after frame.",
        (
            "missionctl top",
            "missionctl top --interval 5 --all",
            "missionctl top --once -o json | jq .stats.queue_depth",
        ),
    )
    top_parser.add_argument(
        "--interval", type=_SECONDS, default=2.0, metavar="SECONDS", help="time between frames; default 2"
    )
    top_parser.add_argument("--once", action="store_true", help="print one frame and exit (no throughput yet)")
    top_parser.add_argument("--all", action="store_true", help="also workers that stopped or were lost long ago")
    _add_plain(top_parser, "frame after frame instead of redrawing one")
    top_parser.set_defaults(command=top.command)


def _add_completion(add: _Add) -> None:
    script = _command(
        add,
        "completion",
        "print a shell completion script",
        "Print a completion script for bash or zsh, generated from missionctl's own options.",
        (
            "bash: missionctl completion bash > ~/.local/share/bash-completion/completions/missionctl",
            "zsh:  missionctl completion zsh > ~/.zfunc/_missionctl   (with fpath+=(~/.zfunc) before compinit)",
            "this shell only: source <(missionctl completion bash)   (zsh: after compinit)",
        ),
        heading="install",
    )
    script.add_argument("shell", choices=completion.SHELLS, help="the shell to complete for")
    script.set_defaults(local=completion.command)


def _add_operations(add: _Add) -> None:
    workers = add("workers", help="list workers", description="List the workers that sent a heartbeat recently, by id.")
    workers.add_argument(
        "--all", action="store_true", help="also workers that stopped or were lost more than 10 minutes ago"
    )
    workers.set_defaults(command=commands.workers)
    stats = add(
        "stats",
        help="show mission counts and queue depths",
        description="Show mission counts, queue depths and recent outcomes.",
    )
    stats.set_defaults(command=commands.stats)
    dead = _command(
        add,
        "dead-letters",
        "list dead-lettered missions, oldest first",
        "List the missions that failed for good and were neither redriven nor purged, oldest first, with"
        " their last error.",
        (
            "missionctl dead-letters --type resize --error-type DeadlineExceeded",
            "missionctl redrive ID --max-attempts 5   (then, to retry one)",
            "missionctl redrive-dead-letters --type resize --dry-run   (or all that match)",
        ),
    )
    _add_paging(dead)
    _add_dead_letter_filter(dead)
    dead.set_defaults(command=commands.dead_letters)
    bulk_redrive = _command(
        add,
        "redrive-dead-letters",
        "queue every matching dead letter again (admin)",
        "Queue every dead-lettered mission that matches the filters again, oldest first, as redrive would;"
        " none given takes every dead letter. Asks first on a terminal (--yes does not); --dry-run only"
        " counts and names them.",
        (
            "missionctl redrive-dead-letters --type resize --dry-run",
            "missionctl redrive-dead-letters --error-type DeadlineExceeded --max-attempts 5 --yes",
        ),
    )
    bulk_redrive.add_argument("--type", metavar="T", help="only missions of this handler type; default: every type")
    _add_dead_letter_filter(bulk_redrive)
    _add_max_attempts(bulk_redrive)
    _add_bulk(bulk_redrive)
    bulk_redrive.set_defaults(command=commands.redrive_dead_letters)
    purge = _command(
        add,
        "purge-dead-letters",
        "purge every matching dead letter for good (admin)",
        "Purge every dead-lettered mission that matches the filters: each stays FAILED but is no longer"
        " listed nor redrivable; none given takes every dead letter. Asks first on a terminal (--yes does"
        " not); --dry-run only counts and names them.",
        (
            "missionctl purge-dead-letters --label env=staging --dry-run",
            "missionctl purge-dead-letters --error-type InvalidPayload --yes",
        ),
    )
    purge.add_argument("--type", metavar="T", help="only missions of this handler type; default: every type")
    _add_dead_letter_filter(purge)
    _add_bulk(purge)
    purge.set_defaults(command=commands.purge_dead_letters)
    redrive = add(
        "redrive",
        help="queue a dead-lettered mission again",
        description="Queue a dead-lettered mission again with a fresh attempt budget.",
    )
    redrive.add_argument("id", metavar="ID", help=f"the dead-lettered mission's id; {_ID_HELP}")
    _add_max_attempts(redrive)
    redrive.set_defaults(command=commands.redrive)


# --- the parser ---


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps prose to the terminal but keeps indented lines (examples, tables) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines: list[str] = []
        for line in text.splitlines():
            if not line or line.startswith(" "):
                lines.append(indent + line)
            else:
                lines += textwrap.wrap(line, width, initial_indent=indent, subsequent_indent=indent)
        return "\n".join(lines)


def _absent(text: str | None) -> NotGiven | None:
    """What applies without the flag as far as the parser can tell (its variable, else the code default;
    the config file is read later), for --help and docs/configuration.md."""
    return None if text is None else NotGiven(text)


def _keeping_markers(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse runs a string default through the option's type; a NotGiven default must stay one."""

    @functools.wraps(parse)
    def convert(text: str) -> Any:
        return text if isinstance(text, NotGiven) else parse(text)

    return convert


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes. Absent, they hold a NotGiven default (before the command)
    or nothing (after it), so that ClientSettings can look at the variable and the config file."""
    # After the command, they come last in its --help, apart from its own options.
    group = parser if defaults else parser.add_argument_group("global options (also before COMMAND)")

    def default(text: str | None) -> Any:
        return _absent(text) if defaults else argparse.SUPPRESS

    for option in OPTIONS:
        group.add_argument(
            *option.flags, default=default(option.from_environment() or option.default), **_shape(option)
        )
    group.add_argument(
        "--config",
        type=pathlib.Path,
        metavar="PATH",
        default=default(variable(CONFIG_VARIABLE)),
        help=f"config file [{CONFIG_VARIABLE}, default {_CONFIG_HELP}]",
    )
    group.add_argument(
        "--profile",
        metavar="NAME",
        default=default(variable(PROFILE_VARIABLE)),
        help=f"use the [profiles.NAME] table of the config file [{PROFILE_VARIABLE}, default unset]",
    )


def _shape(option: Option) -> dict[str, Any]:
    """How argparse takes ``option``: a switch (with --no-), or a value checked by its type."""
    described = option.described(f"config {option.name}")
    if option.type is boolean:
        return {"action": argparse.BooleanOptionalAction, "help": described}
    return {
        "type": _keeping_markers(argument_type(option.type)),
        "choices": option.choices,
        "metavar": option.metavar,
        "help": described,
    }


def build_parser() -> argparse.ArgumentParser:
    """The missionctl parser; the chosen command function is ``args.command`` (or ``args.local``)."""
    parser = argparse.ArgumentParser(
        prog="missionctl",
        description="Command-line client of MissionService: submit and follow missions, watch them live,"
        " and see workers, queues and throughput.",
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    _add_global_options(parser, defaults=True)
    # Every command accepts the global options too, so `missionctl get ID -o json` works.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, defaults=False)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    shared: dict[str, Any] = {"parents": [common], "formatter_class": _HelpFormatter}
    add = functools.partial(subparsers.add_parser, **shared)
    _add_submit(add)
    _add_queries(add)
    _add_watch(add)
    _add_operations(add)
    _add_top(add)
    schedules.add_schedule(add, shared, _payload, _label, _SECONDS)
    _add_completion(add)
    return parser
