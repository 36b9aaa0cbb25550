"""`mission-service`: parse flags (each backed by a MISSIONS_* variable) and serve."""

from __future__ import annotations

import argparse
import getpass
import pathlib
import secrets
import sys
from datetime import timedelta

from mission_service.app import serve
from mission_service.limit_flags import add_limit_options, limits_from_args
from mission_service.recent import DEFAULT_RECENT_BYTES, DEFAULT_RECENT_EVENTS
from mission_service.settings import DEFAULT_MAX_WATCH_STREAMS, ServiceSettings
from mission_service.tokens import TokenTable, hash_token
from mission_service.watch import DEFAULT_BUFFER
from missions.metrics import add_metrics_listen_option, metrics_listen
from missions.settings import (
    add_common_options,
    add_retention_options,
    amqp_tls,
    env,
    optional_path,
    retention_from_args,
    run_until_signalled,
)
from missions.tls import TlsConfigError, TlsFiles
from missions.topology import MAX_NAME_BYTES, Topology
from missions.tracing import add_tracing_option, tracing_mode

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The flags of `mission-service`, each defaulting to its MISSIONS_* variable."""
    parser = argparse.ArgumentParser(
        prog="mission-service",
        description="gRPC MissionService on RabbitMQ",
        epilog="mission-service hash-token [--generate]: print the SHA-256 a --tokens-file stores for a token"
        " (docs/security.md)",
    )
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
    add_retention_options(parser)
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
    parser.add_argument(
        "--watch-buffer",
        type=int,
        default=int(env("WATCH_BUFFER", str(DEFAULT_BUFFER))),
        help="events a WatchEvents subscriber may have waiting before it is cut off as too slow"
        f" (RESOURCE_EXHAUSTED), default {DEFAULT_BUFFER} [MISSIONS_WATCH_BUFFER]",
    )
    parser.add_argument(
        "--recent-events",
        type=int,
        default=int(env("RECENT_EVENTS", str(DEFAULT_RECENT_EVENTS))),
        help="latest events kept in memory, so that a WatchEvents stream starting among them (a"
        " client watching the mission it just submitted) never reads the broker's log; 0: none,"
        f" default {DEFAULT_RECENT_EVENTS} [MISSIONS_RECENT_EVENTS]",
    )
    parser.add_argument(
        "--recent-events-bytes",
        type=int,
        default=int(env("RECENT_EVENTS_BYTES", str(DEFAULT_RECENT_BYTES))),
        help="bound of those events' encoded size, the oldest dropped first, default"
        f" {DEFAULT_RECENT_BYTES} (32 MiB) [MISSIONS_RECENT_EVENTS_BYTES]",
    )
    add_metrics_listen_option(parser)
    add_tracing_option(parser)
    _add_security_options(parser)
    add_limit_options(parser)
    return parser


def parse(argv: list[str] | None = None) -> tuple[ServiceSettings, argparse.Namespace]:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("reap_interval", "watch_heartbeat", "watch_buffer"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    for flag in ("shutdown_grace", "recent_events", "recent_events_bytes"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must not be negative")
    settings = ServiceSettings(
        amqp_url=args.amqp_url,
        namespace=args.namespace,
        listen=args.listen,
        state_dir=args.state_dir,
        shutdown_grace_s=args.shutdown_grace,
        reap_interval=timedelta(seconds=args.reap_interval),
        watch_heartbeat=timedelta(seconds=args.watch_heartbeat),
        watch_buffer=args.watch_buffer,
        recent_events=args.recent_events,
        recent_bytes=args.recent_events_bytes,
        limits=limits_from_args(args, parser),
        retention=retention_from_args(args),
        tls=_server_tls(parser, args),
        tokens_file=args.tokens_file,
        insecure=args.insecure,
        max_watch_streams=args.max_watch_streams,
        amqp_tls=amqp_tls(parser, args),
        metrics_listen=metrics_listen(parser, args),
        tracing=tracing_mode(parser, args),
    )
    if args.tokens_file is not None:
        try:
            TokenTable.load(args.tokens_file)
        except ValueError as exc:
            parser.error(f"--tokens-file: {exc}")
    if args.max_watch_streams < 0:
        parser.error("--max-watch-streams must not be negative (0: no limit)")
    # Each type has a work queue named after it, and RabbitMQ names are at most 255 bytes.
    longest = len(Topology(settings.namespace).work_queue("t" * settings.limits.max_type_length))
    if longest > MAX_NAME_BYTES:
        parser.error(
            f"--max-type-length {settings.limits.max_type_length}: the work queue of such a type would be named"
            f" with {longest} bytes in namespace {settings.namespace!r}; RabbitMQ allows {MAX_NAME_BYTES}"
        )
    problem = settings.exposure_problem()
    if problem and not settings.insecure:
        parser.error(problem)
    return settings, args


def _add_security_options(parser: argparse.ArgumentParser) -> None:
    """TLS, mTLS, tokens and the stream quota (see docs/security.md)."""
    for flag, name, what in (
        ("--tls-cert", "TLS_CERT", "server certificate chain (PEM); turns TLS on"),
        ("--tls-key", "TLS_KEY", "private key of --tls-cert (PEM)"),
        ("--tls-client-ca", "TLS_CLIENT_CA", "clients must present a certificate signed by this CA (mTLS)"),
        ("--tokens-file", "TOKENS_FILE", "bearer token hashes -> principal and roles; turns authentication on"),
    ):
        parser.add_argument(flag, type=pathlib.Path, default=optional_path(name), help=f"{what} [MISSIONS_{name}]")
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=env("INSECURE", "") not in ("", "0", "false"),
        help="allow a non-loopback --listen without TLS or authentication [MISSIONS_INSECURE]",
    )
    parser.add_argument(
        "--max-watch-streams",
        type=int,
        default=int(env("MAX_WATCH_STREAMS", str(DEFAULT_MAX_WATCH_STREAMS))),
        help=f"concurrent WatchEvents streams per principal, 0: no limit; default {DEFAULT_MAX_WATCH_STREAMS}"
        " [MISSIONS_MAX_WATCH_STREAMS]",
    )


def _server_tls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TlsFiles | None:
    files = TlsFiles(
        args.tls_client_ca, args.tls_cert, args.tls_key, flags=("--tls-client-ca", "--tls-cert", "--tls-key")
    )
    if not files.configured:
        return None
    try:
        files.validate(server=True)
    except TlsConfigError as exc:
        parser.error(str(exc))
    return files


def hash_token_main(argv: list[str]) -> int:
    """`mission-service hash-token [--generate]`: print the SHA-256 hex a tokens file stores.

    The token is read from a prompt or stdin, never from the command line (which other
    users can see); ``--generate`` makes a fresh random token and prints it too.
    """
    parser = argparse.ArgumentParser(prog="mission-service hash-token", description=hash_token_main.__doc__)
    parser.add_argument("--generate", action="store_true", help="make a new random token and print 'TOKEN HASH'")
    args = parser.parse_args(argv)
    if args.generate:
        token = secrets.token_urlsafe(32)
        print(token, hash_token(token))
        return 0
    token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.read().strip()
    if not token:
        parser.error("no token given on stdin")
    print(hash_token(token))
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["hash-token"]:
        return hash_token_main(arguments[1:])
    settings, args = parse(arguments)
    return run_until_signalled(lambda stop: serve(settings, stop), args)


if __name__ == "__main__":
    sys.exit(main())
