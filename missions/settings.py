"""Options common to every entry point: flags backed by MISSIONS_* variables, and signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from missions.amqp import LogRetention
from missions.logs import configure_logging
from missions.startup import StartupError
from missions.tls import TlsConfigError, TlsFiles

__all__ = [
    "add_common_options",
    "add_retention_options",
    "amqp_tls",
    "env",
    "optional_path",
    "retention_from_args",
    "run_until_signalled",
]

log = logging.getLogger(__name__)

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"


def env(name: str, default: str) -> str:
    """The value of the MISSIONS_<name> variable, or ``default``."""
    return os.environ.get(f"MISSIONS_{name}", default)


def optional_path(name: str) -> pathlib.Path | None:
    """The MISSIONS_<name> variable as a path, or None when it is unset or empty."""
    value = env(name, "")
    return pathlib.Path(value) if value else None


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amqp-url", default=env("AMQP_URL", DEFAULT_AMQP_URL), help="broker URL [MISSIONS_AMQP_URL]")
    amqps = "amqps:// only: "
    for flag, name, what in (
        ("--amqp-ca", "AMQP_CA", "CA bundle that verifies the broker (default: the system's)"),
        ("--amqp-cert", "AMQP_CERT", "client certificate to present to the broker"),
        ("--amqp-key", "AMQP_KEY", "private key of --amqp-cert"),
    ):
        parser.add_argument(
            flag, type=pathlib.Path, default=optional_path(name), help=f"{amqps}{what} [MISSIONS_{name}]"
        )
    parser.add_argument(
        "--namespace",
        default=env("NAMESPACE", "missions"),
        help="prefix of every exchange and queue [MISSIONS_NAMESPACE]",
    )
    parser.add_argument(
        "--log-level",
        default=env("LOG_LEVEL", "INFO"),
        help="DEBUG adds a line per mission queued, attempt started and attempt succeeded [MISSIONS_LOG_LEVEL]",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=env("LOG_FORMAT", "text"), help="[MISSIONS_LOG_FORMAT]"
    )


def amqp_tls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TlsFiles | None:
    """The broker TLS files of ``args``, checked now (a usage error names the flag), or None."""
    files = TlsFiles(args.amqp_ca, args.amqp_cert, args.amqp_key, flags=("--amqp-ca", "--amqp-cert", "--amqp-key"))
    if not files.configured:
        return None
    if not args.amqp_url.startswith("amqps://"):
        parser.error("--amqp-ca, --amqp-cert and --amqp-key need an amqps:// --amqp-url")
    try:
        files.validate()
    except TlsConfigError as exc:
        parser.error(str(exc))
    return files


def run_until_signalled(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], args: argparse.Namespace) -> int:
    """Run ``main(stop)`` under asyncio; SIGTERM/SIGINT set ``stop``, a second one exits at once.

    Returns the exit code: 0, or 1 when ``main`` fails (a StartupError is logged as its one line).
    """
    configure_logging(args.log_level, args.log_format)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s received: shutting down", signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await main(stop)

    try:
        asyncio.run(runner())
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    except Exception:
        log.exception("fatal error")
        return 1
    return 0


def add_retention_options(parser: argparse.ArgumentParser) -> None:
    """The event log's retention: every process that may create the log stream takes it."""
    defaults = LogRetention()
    parser.add_argument(
        "--log-max-age",
        default=env("LOG_MAX_AGE", defaults.max_age),
        help="how long the event log keeps events, a RabbitMQ duration such as 7D or 12h; the same on every"
        f" process of a namespace (default {defaults.max_age}) [MISSIONS_LOG_MAX_AGE]",
    )
    parser.add_argument(
        "--log-max-bytes",
        type=int,
        default=int(env("LOG_MAX_BYTES", str(defaults.max_bytes))),
        help=f"size cap of the event log in bytes; the same on every process of a namespace (default"
        f" {defaults.max_bytes}) [MISSIONS_LOG_MAX_BYTES]",
    )


def retention_from_args(args: argparse.Namespace) -> LogRetention:
    return LogRetention(max_age=args.log_max_age, max_bytes=args.log_max_bytes)
