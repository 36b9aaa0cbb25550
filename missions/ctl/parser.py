"""missionctl's command line: flag types, the global options and one sub-parser per command."""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
from collections.abc import Callable
from typing import Any

from google.protobuf import struct_pb2

from missions.ctl import commands, enums
from missions.settings import env, optional_path

__all__ = ["DEFAULT_SERVER", "build_parser"]

DEFAULT_SERVER = "127.0.0.1:50051"

_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}

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


# --- the commands ---


def _add_submit(add: _Add) -> None:
    submit = add("submit", help="queue a mission", description="Queue a mission.")
    submit.add_argument("type", metavar="TYPE", help="handler name, e.g. echo")
    submit.add_argument(
        "--payload", type=_payload, metavar="JSON", help="a JSON object, inline or @FILE (@- for stdin); default {}"
    )
    submit.add_argument("--priority", choices=enums.choices(enums.PRIORITY), help="default: normal")
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
    submit.set_defaults(command=commands.submit)


def _add_paging(listing: argparse.ArgumentParser) -> None:
    """--type and the paging flags that ``list`` and ``dead-letters`` share."""
    listing.add_argument("--type", metavar="T", help="only missions of this handler type")
    listing.add_argument("--page-size", type=_integer(1), metavar="N", help="default: the service's (100)")
    listing.add_argument("--page-token", metavar="TOKEN", help="continue from a previous page")
    listing.add_argument("--all", action="store_true", help="follow next_page_token to the last page")


def _add_queries(add: _Add) -> None:
    get = add("get", help="show one mission", description="Show one mission.")
    get.add_argument("id", metavar="ID")
    get.set_defaults(command=commands.get)
    listing = add("list", help="list missions, oldest first", description="List missions, oldest first.")
    listing.add_argument(
        "--state", choices=enums.choices(enums.STATE), action="append", help="repeatable; default: every state"
    )
    _add_paging(listing)
    listing.set_defaults(command=commands.list_missions)
    cancel = add("cancel", help="cancel a mission", description="Cancel a mission.")
    cancel.add_argument("id", metavar="ID")
    cancel.add_argument("--reason", metavar="R", help="recorded on the CANCELLED event")
    cancel.set_defaults(command=commands.cancel)


def _add_watch(add: _Add) -> None:
    watch = add(
        "watch",
        help="stream mission events",
        description="Stream mission events until the stream ends (all watched missions finished) or Ctrl-C.",
    )
    watch.add_argument("--mission", metavar="ID", action="append", help="repeatable; default: every mission")
    watch.add_argument(
        "--type", choices=enums.choices(enums.EVENT), action="append", help="repeatable; default: every type"
    )
    watch.add_argument(
        "--after",
        type=_integer(0),
        metavar="N",
        help="replay events after sequence N first (0: the whole retained log); default: live only,"
        " or every past event of the --mission ids",
    )
    watch.set_defaults(command=commands.watch)


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
    dead = add(
        "dead-letters",
        help="list dead-lettered missions, oldest first",
        description="List the missions that failed for good and were not redriven, oldest first, with their last"
        " error.",
    )
    _add_paging(dead)
    dead.set_defaults(command=commands.dead_letters)
    redrive = add(
        "redrive",
        help="queue a dead-lettered mission again",
        description="Queue a dead-lettered mission again with a fresh attempt budget.",
    )
    redrive.add_argument("id", metavar="ID")
    redrive.add_argument(
        "--max-attempts", type=_integer(1), metavar="N", help="attempt budget (at most 100); default: the original"
    )
    redrive.set_defaults(command=commands.redrive)


# --- the parser ---


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
    _add_security_options(parser, default)


def _add_security_options(parser: argparse.ArgumentParser, default: Callable[[object], object]) -> None:
    """TLS and the bearer token (docs/security.md); the token is best given by variable or file, not argv."""
    parser.add_argument(
        "--tls",
        action="store_true",
        default=default(env("TLS", "") not in ("", "0", "false")),
        help="connect with TLS, verifying the server with the system's CAs [MISSIONS_TLS]",
    )
    for flag, name, what in (
        ("--tls-ca", "TLS_CA", "connect with TLS, verifying the server with this CA bundle"),
        ("--tls-cert", "CLIENT_CERT", "client certificate for a service that requires mTLS"),
        ("--tls-key", "CLIENT_KEY", "private key of --tls-cert"),
        ("--token-file", "TOKEN_FILE", "read the bearer token from this file"),
    ):
        parser.add_argument(
            flag,
            type=pathlib.Path,
            default=default(optional_path(name)),
            metavar="PATH",
            help=f"{what} [MISSIONS_{name}]",
        )
    parser.add_argument(
        "--token",
        default=default(env("TOKEN", "")),
        metavar="TOKEN",
        help="bearer token (visible to other local users in the process list: prefer MISSIONS_TOKEN or"
        " --token-file) [MISSIONS_TOKEN]",
    )


def build_parser() -> argparse.ArgumentParser:
    """The missionctl parser; the chosen command function is ``args.command``."""
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
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    add = functools.partial(subparsers.add_parser, parents=[common])
    _add_submit(add)
    _add_queries(add)
    _add_watch(add)
    _add_operations(add)
    return parser
