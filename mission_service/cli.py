"""`mission-service`: parse flags (each backed by a MISSIONS_* variable) and serve."""

from __future__ import annotations

import argparse
import pathlib
import sys
from datetime import timedelta

from mission_service.app import serve
from mission_service.settings import ServiceSettings
from missions.amqp import LogRetention
from missions.settings import add_common_options, env, run_until_signalled

__all__ = ["main"]


def parse(argv: list[str] | None = None) -> tuple[ServiceSettings, argparse.Namespace]:
    defaults = LogRetention()
    parser = argparse.ArgumentParser(prog="mission-service", description="gRPC MissionService on RabbitMQ")
    add_common_options(parser)
    parser.add_argument("--listen", default=env("LISTEN", "127.0.0.1:50051"), help="[MISSIONS_LISTEN]")
    parser.add_argument(
        "--state-dir",
        type=pathlib.Path,
        default=env("STATE_DIR", ".state"),
        help="SQLite location [MISSIONS_STATE_DIR]",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=float(env("SHUTDOWN_GRACE", "5")),
        help="seconds [MISSIONS_SHUTDOWN_GRACE]",
    )
    parser.add_argument(
        "--log-max-age", default=env("LOG_MAX_AGE", defaults.max_age), help="event log retention [MISSIONS_LOG_MAX_AGE]"
    )
    parser.add_argument(
        "--log-max-bytes",
        type=int,
        default=int(env("LOG_MAX_BYTES", str(defaults.max_bytes))),
        help="event log size cap [MISSIONS_LOG_MAX_BYTES]",
    )
    parser.add_argument(
        "--reap-interval",
        type=float,
        default=float(env("REAP_INTERVAL", "1")),
        help="seconds between sweeps for attempts of lost workers [MISSIONS_REAP_INTERVAL]",
    )
    parser.add_argument(
        "--watch-heartbeat",
        type=float,
        default=float(env("WATCH_HEARTBEAT", "15")),
        help="seconds of silence after which a WatchEvents stream gets a heartbeat [MISSIONS_WATCH_HEARTBEAT]",
    )
    args = parser.parse_args(argv)
    for flag in ("reap_interval", "watch_heartbeat"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    if args.shutdown_grace < 0:
        parser.error("--shutdown-grace must not be negative")
    settings = ServiceSettings(
        amqp_url=args.amqp_url,
        namespace=args.namespace,
        listen=args.listen,
        state_dir=args.state_dir,
        shutdown_grace_s=args.shutdown_grace,
        reap_interval=timedelta(seconds=args.reap_interval),
        watch_heartbeat=timedelta(seconds=args.watch_heartbeat),
        retention=LogRetention(max_age=args.log_max_age, max_bytes=args.log_max_bytes),
    )
    return settings, args


def main(argv: list[str] | None = None) -> int:
    settings, args = parse(argv)
    return run_until_signalled(lambda stop: serve(settings, stop), args)


if __name__ == "__main__":
    sys.exit(main())
