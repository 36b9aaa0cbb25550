"""Command-line options backed by ``MISSIONS_*`` variables: one ``Option`` per flag, one way to add them.

Every program describes its flags as a table of ``Option`` rows (flag, variable, type,
default, help) and ``add_options`` puts them on its parser. The variable, when set and not
empty, replaces the table's default, and its text goes through the same type as a
command-line value, at parse time: a bad value is a usage error (exit 2) naming the flag
and the variable. Range checks belong in the type, so every bad value fails the same way.
The help of each flag names its variable and default once, and docs/configuration.md is
generated from it (scripts/gen_docs.py).

This module also holds the options mission-service and mission-worker share: the broker,
namespace and logging (``COMMON``), the event log's retention, metrics and tracing.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import pathlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from missions.amqp import LogRetention
from missions.brokers import broker_urls
from missions.metrics_http import split_listen
from missions.tls import TlsConfigError, TlsFiles
from missions.tracing import MODES, installed

__all__ = [
    "AMQP_URL",
    "COMMON",
    "DEFAULT_AMQP_URL",
    "METRICS_LISTEN",
    "RETENTION",
    "TRACING",
    "Choice",
    "Option",
    "add_options",
    "amqp_tls",
    "argument_type",
    "boolean",
    "integer",
    "listen_address",
    "retention_from_args",
    "seconds",
    "text",
    "variable",
]

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"


def variable(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of the environment variable ``name``; None when it is unset or empty."""
    return (os.environ if environ is None else environ).get(name) or None


# --- types: text in, value out, ValueError with the reason otherwise ---


def text(value: str) -> str:
    return value


_FALSE = ("", "0", "false", "no", "off")
_TRUE = ("1", "true", "yes", "on")


def boolean(value: str) -> bool:
    """1, true, yes, on / 0, false, no, off or empty, in any case; ValueError otherwise, so a
    typo in a switch's variable is an error rather than a guess."""
    word = value.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ValueError(f"expected one of {', '.join(_TRUE)} or {', '.join(_FALSE[1:])}, got {value!r}")
    return word in _TRUE


class Choice:
    """A type that takes one of ``choices`` (argparse lists them in --help), then checks it with ``then``."""

    def __init__(self, *choices: str, then: Callable[[str], str] = text) -> None:
        self.choices = choices
        self._then = then

    def __call__(self, value: str) -> str:
        if value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, got {value!r}")
        return self._then(value)


def integer(minimum: int) -> Callable[[str], int]:
    """A type for integers of at least ``minimum``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def seconds(*, positive: bool = False) -> Callable[[str], timedelta]:
    """A type for a finite duration in seconds (fractions allowed), non-negative or ``positive``."""
    wanted = "a positive" if positive else "a non-negative"

    def parse(value: str) -> timedelta:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            raise ValueError(f"expected {wanted} number of seconds, got {value!r}")
        return timedelta(seconds=number)

    return parse


def listen_address(value: str) -> str:
    """HOST:PORT, or "" for none."""
    if value:
        split_listen(value)
    return value


# --- the option and the parser ---


@dataclass(frozen=True, slots=True)
class Option:
    """One flag backed by a ``MISSIONS_*`` variable.

    Attributes:
        flag: the long flag, e.g. ``--concurrency``; its name (``concurrency``) is the
            attribute of the parsed arguments.
        variable: the environment variable that replaces ``default``, e.g. ``MISSIONS_CONCURRENCY``.
        help: what the option does; the variable and default are appended.
        type: turns the text of the flag or variable into the value, raising ValueError with
            the reason when it is bad. ``boolean`` makes a switch that takes no value.
        default: the text that applies without the flag or variable, as a user would type
            it; None: unset.
        metavar: the value's name in --help.
        short: a one-letter alias, e.g. ``-o``.
    """

    flag: str
    variable: str
    help: str
    type: Callable[[str], Any] = text
    default: str | None = None
    metavar: str | None = None
    short: str | None = None

    @property
    def name(self) -> str:
        return self.flag.removeprefix("--")

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.short, self.flag) if self.short else (self.flag,)

    @property
    def choices(self) -> tuple[str, ...] | None:
        return self.type.choices if isinstance(self.type, Choice) else None

    def from_environment(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The text of this option's variable; None when it is unset or empty."""
        return variable(self.variable, environ)

    def described(self, *sources: str) -> str:
        """The help text, ending in where the value comes from without the flag:
        ``[MISSIONS_X, <sources>, default D]`` (D is ``unset``, or ``off`` for a switch, without one)."""
        # Worded as docs/configuration.md's default column (scripts/gen_docs.py), which says the same.
        unset = "off" if self.type is boolean else "unset"
        return f"{self.help} [{', '.join([self.variable, *sources])}, default {self.default or unset}]"

    def parse(self, value: str, where: str) -> Any:
        """``value`` through the option's type; a bad one raises ValueError prefixed with ``where``."""
        try:
            return self.type(value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


class _FromVariable(str):
    """A default taken from the option's variable, so that an error can say so."""

    __slots__ = ()


class _Switch(argparse.Action):
    """A flag without a value that turns its option on; its variable's text, like any default
    given as text, goes through the type when argparse parses (so a bad one is a usage error)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: Any) -> None:
        setattr(namespace, self.dest, True)


def argument_type(parse: Callable[[str], Any], variable: str = "") -> Callable[[str], Any]:
    """``parse`` as an argparse type: its ValueError becomes an ArgumentTypeError, which argparse
    turns into a usage error naming the flag (and ``variable`` when the text came from it)."""

    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            where = f"{variable}: " if isinstance(value, _FromVariable) else ""
            raise argparse.ArgumentTypeError(f"{where}{exc}") from None

    # Named and unwrappable as ``parse``: argparse's messages and missionctl's completion read it.
    return functools.update_wrapper(convert, parse)


def add_options(
    parser: argparse._ActionsContainer, options: Iterable[Option], environ: Mapping[str, str] | None = None
) -> None:
    """Add ``options`` to ``parser`` (or an argument group), each defaulting to its variable, else its default.

    A default is kept as text, which argparse runs through the type only when the flag is
    absent: a bad variable fails at parse time as a usage error, not while the parser is built.
    """
    for option in options:
        given = option.from_environment(environ)
        if option.type is boolean:
            parser.add_argument(
                *option.flags,
                dest=option.dest,
                action=_Switch,
                type=argument_type(boolean, option.variable),
                default=boolean(option.default or "") if given is None else _FromVariable(given),
                help=option.described(),
            )
            continue
        parser.add_argument(
            *option.flags,
            dest=option.dest,
            type=argument_type(option.type, option.variable),
            default=option.default if given is None else _FromVariable(given),
            choices=option.choices,
            metavar=option.metavar,
            help=option.described(),
        )


# --- the options both processes take ---

AMQP_URL = Option(
    "--amqp-url",
    "MISSIONS_AMQP_URL",
    "broker URL; the nodes of one cluster as several URLs separated by commas (tried in turn, and the"
    " next one when a node is lost)",
    default=DEFAULT_AMQP_URL,
)
_AMQPS = "amqps:// only: "
COMMON = (
    AMQP_URL,
    Option(
        "--amqp-ca",
        "MISSIONS_AMQP_CA",
        f"{_AMQPS}CA bundle that verifies the broker; unset: the system's CAs",
        type=pathlib.Path,
    ),
    Option("--amqp-cert", "MISSIONS_AMQP_CERT", f"{_AMQPS}client certificate to present to the broker", pathlib.Path),
    Option("--amqp-key", "MISSIONS_AMQP_KEY", f"{_AMQPS}private key of --amqp-cert", pathlib.Path),
    Option("--namespace", "MISSIONS_NAMESPACE", "prefix of every exchange and queue", default="missions"),
    Option(
        "--log-level",
        "MISSIONS_LOG_LEVEL",
        "DEBUG adds a line per mission queued, attempt started and attempt succeeded",
        default="INFO",
    ),
    Option("--log-format", "MISSIONS_LOG_FORMAT", "json: one object per line", Choice("text", "json"), default="text"),
)

_SAME_EVERYWHERE = "; the same on every process of a namespace"
RETENTION = (
    Option(
        "--log-max-age",
        "MISSIONS_LOG_MAX_AGE",
        f"how long the event log keeps events, a RabbitMQ duration such as 7D or 12h{_SAME_EVERYWHERE}",
        default=LogRetention().max_age,
    ),
    Option(
        "--log-max-bytes",
        "MISSIONS_LOG_MAX_BYTES",
        f"size cap of the event log in bytes{_SAME_EVERYWHERE}",
        integer(1),
        default=str(LogRetention().max_bytes),
    ),
)

METRICS_LISTEN = Option(
    "--metrics-listen",
    "MISSIONS_METRICS_LISTEN",
    "serve Prometheus metrics over HTTP on this HOST:PORT, e.g. 127.0.0.1:9464; off when empty (docs/metrics.md)",
    listen_address,
    default="",
)

TRACING = Option(
    "--tracing",
    "MISSIONS_TRACING",
    "OpenTelemetry spans: off; console (JSON lines on stdout); otlp (the OTLP exporter, set up by the"
    " standard OTEL_EXPORTER_OTLP_* variables). Needs the tracing extra (docs/tracing.md)",
    Choice(*MODES, then=installed),
    default="off",
)


def retention_from_args(args: argparse.Namespace) -> LogRetention:
    """The event log retention the ``RETENTION`` flags of ``args`` ask for."""
    return LogRetention(max_age=args.log_max_age, max_bytes=args.log_max_bytes)


def amqp_tls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TlsFiles | None:
    """The broker TLS files of ``args``, checked now (a usage error names the flag), or None."""
    files = TlsFiles(args.amqp_ca, args.amqp_cert, args.amqp_key, flags=("--amqp-ca", "--amqp-cert", "--amqp-key"))
    if not files.configured:
        return None
    if not all(url.startswith("amqps://") for url in broker_urls(args.amqp_url)):
        parser.error("--amqp-ca, --amqp-cert and --amqp-key need an amqps:// --amqp-url")
    try:
        files.validate()
    except TlsConfigError as exc:
        parser.error(str(exc))
    return files
