"""Options common to every entry point: flags backed by MISSIONS_* variables, and signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from missions.logs import configure_logging

__all__ = ["add_common_options", "env", "run_until_signalled"]

log = logging.getLogger(__name__)

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"


def env(name: str, default: str) -> str:
    """The value of the MISSIONS_<name> variable, or ``default``."""
    return os.environ.get(f"MISSIONS_{name}", default)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amqp-url", default=env("AMQP_URL", DEFAULT_AMQP_URL), help="broker URL [MISSIONS_AMQP_URL]")
    parser.add_argument(
        "--namespace",
        default=env("NAMESPACE", "missions"),
        help="prefix of every exchange and queue [MISSIONS_NAMESPACE]",
    )
    parser.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"), help="[MISSIONS_LOG_LEVEL]")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=env("LOG_FORMAT", "text"), help="[MISSIONS_LOG_FORMAT]"
    )


def run_until_signalled(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], args: argparse.Namespace) -> int:
    """Run ``main(stop)`` under asyncio; SIGTERM/SIGINT set ``stop``, a second one exits at once."""
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
    except Exception:
        log.exception("fatal error")
        return 1
    return 0
