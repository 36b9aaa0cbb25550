"""`mission-worker`: parse flags (each backed by a MISSIONS_* variable) and work."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from missions import options
from missions.options import Option, integer, seconds
from missions.process import run_until_signalled
from worker_service.app import run_worker
from worker_service.handlers import HandlerModuleError, default_registry, load_modules
from worker_service.ledger import DEFAULT_REMEMBER_FINISHED
from worker_service.settings import WorkerSettings

__all__ = ["build_parser", "main"]


def _worker_id() -> Option:
    """--worker-id, whose default names this process: made when the parser is."""
    return Option(
        "--worker-id",
        "MISSIONS_WORKER_ID",
        "identity in STARTED events",
        default=f"{socket.gethostname()}:{os.getpid()}",
    )


# The worker's own options, after --worker-id.
_WORKER = (
    Option(
        "--concurrency",
        "MISSIONS_CONCURRENCY",
        "attempts run at once; as many more may wait in the worker for a free slot",
        integer(1),
        default="8",
    ),
    Option(
        "--handlers",
        "MISSIONS_HANDLERS",
        "comma-separated handler modules to import from the working directory or the installed packages,"
        " e.g. pkg.module,pkg.other; the worker serves the mission types they register ('builtin' names the"
        " built-in noop, echo, sleep and fail, which are the default)",
        default="",
    ),
    Option(
        "--types",
        "MISSIONS_TYPES",
        "comma-separated mission types to serve, a subset of the loaded handlers' (default: all of them)",
        default="",
    ),
    Option(
        "--retry-base",
        "MISSIONS_RETRY_BASE",
        "backoff base in seconds: the retry after attempt n waits up to base * 2^(n-1)",
        seconds(),
        default="1",
    ),
    Option("--retry-max", "MISSIONS_RETRY_MAX", "backoff cap in seconds", seconds(), default="300"),
    Option(
        "--default-timeout",
        "MISSIONS_DEFAULT_TIMEOUT",
        "per-attempt seconds when a mission sets none",
        seconds(positive=True),
        default="300",
    ),
    Option(
        "--drain-timeout",
        "MISSIONS_DRAIN_TIMEOUT",
        "seconds running missions get to finish on shutdown",
        seconds(),
        default="30",
    ),
    Option(
        "--cancel-grace",
        "MISSIONS_CANCEL_GRACE",
        "seconds a cancelled or timed-out handler gets to return before its task is cancelled",
        seconds(),
        default="5",
    ),
    Option(
        "--heartbeat-interval",
        "MISSIONS_HEARTBEAT_INTERVAL",
        "seconds between heartbeats",
        seconds(positive=True),
        default="5",
    ),
    Option(
        "--health-listen",
        "MISSIONS_WORKER_HEALTH_LISTEN",
        "serve gRPC health checks on this address, e.g. 127.0.0.1:50052",
        default="",
    ),
    Option(
        "--remember-finished",
        "MISSIONS_REMEMBER_FINISHED",
        "missions each worker remembers (about 370 bytes each) so that a late copy of their work message is"
        " dropped without starting; the most recently heard of are kept",
        integer(0),
        default=str(DEFAULT_REMEMBER_FINISHED),
    ),
    options.METRICS_LISTEN,
    options.TRACING,
)


def build_parser() -> argparse.ArgumentParser:
    """The flags of `mission-worker`, each defaulting to its MISSIONS_* variable."""
    parser = argparse.ArgumentParser(prog="mission-worker", description="Runs missions from the work queue")
    options.add_options(parser, (*options.COMMON, *options.RETENTION, _worker_id(), *_WORKER))
    return parser


def _listed(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse(argv: list[str] | None = None) -> tuple[WorkerSettings, argparse.Namespace]:
    """Settings from flags; loads the handler modules (HandlerModuleError if one cannot be imported)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    load_modules(_listed(args.handlers))
    mission_types = _listed(args.types)
    unknown = sorted(set(mission_types) - set(default_registry.names))
    if unknown:
        loaded = ", ".join(default_registry.names) or "none"
        parser.error(f"--types {', '.join(unknown)}: no such handler loaded (loaded: {loaded})")
    if not default_registry.names:
        parser.error(f"--handlers {args.handlers}: the modules register no handler")
    settings = WorkerSettings(
        amqp_url=args.amqp_url,
        namespace=args.namespace,
        worker_id=args.worker_id,
        concurrency=args.concurrency,
        mission_types=mission_types,
        retry_base=args.retry_base,
        retry_max=args.retry_max,
        default_timeout=args.default_timeout,
        drain_timeout=args.drain_timeout,
        cancel_grace=args.cancel_grace,
        heartbeat_interval=args.heartbeat_interval,
        health_listen=args.health_listen,
        metrics_listen=args.metrics_listen,
        amqp_tls=options.amqp_tls(parser, args),
        tracing=args.tracing,
        remember_finished=args.remember_finished,
    )
    return settings, args


def main(argv: list[str] | None = None) -> int:
    try:
        settings, args = parse(argv)
    except HandlerModuleError as exc:
        print(f"mission-worker: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(lambda stop: run_worker(settings, stop, options.retention_from_args(args)), args)


if __name__ == "__main__":
    sys.exit(main())
