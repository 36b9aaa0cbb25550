"""Running an entry point's main coroutine: logging, signals and the exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from missions.logs import configure_logging
from missions.startup import StartupError

__all__ = ["run_until_signalled"]

log = logging.getLogger(__name__)


def run_until_signalled(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], args: argparse.Namespace) -> int:
    """Run ``main(stop)`` under asyncio; SIGTERM/SIGINT set ``stop``, a second one exits at once.

    Logging is configured first, from the --log-level and --log-format of ``args``.

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
