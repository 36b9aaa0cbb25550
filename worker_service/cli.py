"""`mission-worker`: parse flags (each backed by a MISSIONS_* variable) and work."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from datetime import timedelta

from missions.metrics import add_metrics_listen_option, metrics_listen
from missions.settings import (
    add_common_options,
    add_retention_options,
    amqp_tls,
    env,
    retention_from_args,
    run_until_signalled,
)
from missions.tracing import add_tracing_option, tracing_mode
from worker_service.app import run_worker
from worker_service.handlers import HandlerModuleError, default_registry, load_modules
from worker_service.ledger import DEFAULT_REMEMBER_FINISHED
from worker_service.settings import WorkerSettings

__all__ = ["build_parser", "main"]


def _seconds(flag: str, value: float, *, positive: bool = False) -> timedelta:
    if value < 0 or (positive and value == 0):
        raise SystemExit(f"mission-worker: {flag} must be {'positive' if positive else 'non-negative'}, got {value}")
    return timedelta(seconds=value)


def build_parser() -> argparse.ArgumentParser:
    """The flags of `mission-worker`, each defaulting to its MISSIONS_* variable."""
    parser = argparse.ArgumentParser(prog="mission-worker", description="Runs missions from the work queue")
    add_common_options(parser)
    add_retention_options(parser)
    parser.add_argument(
        "--worker-id", default=env("WORKER_ID", f"{socket.gethostname()}:{os.getpid()}"), help="[MISSIONS_WORKER_ID]"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(env("CONCURRENCY", "8")),
        help="attempts run at once; as many more may wait in the worker for a free slot [MISSIONS_CONCURRENCY]",
    )
    parser.add_argument(
        "--handlers",
        default=env("HANDLERS", ""),
        help="comma-separated handler modules to import from the working directory or the installed packages,"
        " e.g. pkg.module,pkg.other; the worker serves the mission types they register ('builtin' names the"
        " built-in noop, echo, sleep and fail, which are the default) [MISSIONS_HANDLERS]",
    )
    parser.add_argument(
        "--types",
        default=env("TYPES", ""),
        help="comma-separated mission types to serve, a subset of the loaded handlers' (default: all of them)"
        " [MISSIONS_TYPES]",
    )
    parser.add_argument(
        "--retry-base", type=float, default=float(env("RETRY_BASE", "1")), help="seconds [MISSIONS_RETRY_BASE]"
    )
    parser.add_argument(
        "--retry-max", type=float, default=float(env("RETRY_MAX", "300")), help="seconds [MISSIONS_RETRY_MAX]"
    )
    parser.add_argument(
        "--default-timeout",
        type=float,
        default=float(env("DEFAULT_TIMEOUT", "300")),
        help="per-attempt seconds when a mission sets none [MISSIONS_DEFAULT_TIMEOUT]",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=float(env("DRAIN_TIMEOUT", "30")),
        help="seconds running missions get to finish on shutdown [MISSIONS_DRAIN_TIMEOUT]",
    )
    parser.add_argument(
        "--cancel-grace",
        type=float,
        default=float(env("CANCEL_GRACE", "5")),
        help="seconds a cancelled or timed-out handler gets to return before its task is cancelled"
        " [MISSIONS_CANCEL_GRACE]",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=float(env("HEARTBEAT_INTERVAL", "5")),
        help="seconds between heartbeats [MISSIONS_HEARTBEAT_INTERVAL]",
    )
    parser.add_argument(
        "--health-listen",
        default=env("WORKER_HEALTH_LISTEN", ""),
        help="serve gRPC health checks on this address, e.g. 127.0.0.1:50052 [MISSIONS_WORKER_HEALTH_LISTEN]",
    )
    parser.add_argument(
        "--remember-finished",
        type=int,
        default=int(env("REMEMBER_FINISHED", str(DEFAULT_REMEMBER_FINISHED))),
        help="missions each worker remembers (about 370 bytes each) so that a late copy of their work"
        " message is dropped without starting; the most recently heard of are kept [MISSIONS_REMEMBER_FINISHED]",
    )
    add_metrics_listen_option(parser)
    add_tracing_option(parser)
    return parser


def _listed(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse(argv: list[str] | None = None) -> tuple[WorkerSettings, argparse.Namespace]:
    """Settings from flags; loads the handler modules (HandlerModuleError if one cannot be imported)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error(f"--concurrency must be at least 1, got {args.concurrency}")
    load_modules(_listed(args.handlers))
    mission_types = _listed(args.types)
    unknown = sorted(set(mission_types) - set(default_registry.names))
    if unknown:
        loaded = ", ".join(default_registry.names) or "none"
        parser.error(f"--types {', '.join(unknown)}: no such handler loaded (loaded: {loaded})")
    if not default_registry.names:
        parser.error(f"--handlers {args.handlers}: the modules register no handler")
    if args.remember_finished < 0:
        parser.error(f"--remember-finished must not be negative, got {args.remember_finished}")
    settings = WorkerSettings(
        amqp_url=args.amqp_url,
        namespace=args.namespace,
        worker_id=args.worker_id,
        concurrency=args.concurrency,
        mission_types=mission_types,
        retry_base=_seconds("--retry-base", args.retry_base),
        retry_max=_seconds("--retry-max", args.retry_max),
        default_timeout=_seconds("--default-timeout", args.default_timeout, positive=True),
        drain_timeout=_seconds("--drain-timeout", args.drain_timeout),
        cancel_grace=_seconds("--cancel-grace", args.cancel_grace),
        heartbeat_interval=_seconds("--heartbeat-interval", args.heartbeat_interval, positive=True),
        health_listen=args.health_listen,
        metrics_listen=metrics_listen(parser, args),
        amqp_tls=amqp_tls(parser, args),
        tracing=tracing_mode(parser, args),
        remember_finished=args.remember_finished,
    )
    return settings, args


def main(argv: list[str] | None = None) -> int:
    try:
        settings, args = parse(argv)
    except HandlerModuleError as exc:
        print(f"mission-worker: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(lambda stop: run_worker(settings, stop, retention_from_args(args)), args)


if __name__ == "__main__":
    sys.exit(main())
