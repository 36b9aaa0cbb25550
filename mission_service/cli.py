"""`mission-service`: parse flags (each backed by a MISSIONS_* variable) and serve."""

from __future__ import annotations

import argparse
import getpass
import pathlib
import secrets
import sys

from mission_service.app import serve
from mission_service.limit_flags import add_limit_options, limits_from_args
from mission_service.recent import DEFAULT_RECENT_BYTES, DEFAULT_RECENT_EVENTS
from mission_service.settings import DEFAULT_MAX_WATCH_STREAMS, ServiceSettings
from mission_service.tokens import TokenTable, hash_token
from mission_service.watch import DEFAULT_BUFFER
from missions.metadata import DEFAULT_ADDRESS
from missions.options import (
    COMMON,
    METRICS_LISTEN,
    RETENTION,
    TRACING,
    Option,
    add_options,
    amqp_tls,
    boolean,
    integer,
    listen_address,
    retention_from_args,
    seconds,
)
from missions.process import run_until_signalled
from missions.tls import TlsConfigError, TlsFiles
from missions.topology import MAX_NAME_BYTES, Topology

__all__ = ["build_parser", "main"]


_SERVICE = (
    Option("--listen", "MISSIONS_LISTEN", "gRPC bind address, HOST:PORT", default=DEFAULT_ADDRESS),
    Option(
        "--http-listen",
        "MISSIONS_HTTP_LISTEN",
        "serve the HTTP/JSON API (docs/http.md) on this HOST:PORT too, e.g. 127.0.0.1:8080, with the TLS and"
        " tokens of the gRPC port; off when empty",
        listen_address,
        default="",
    ),
    Option("--state-dir", "MISSIONS_STATE_DIR", "SQLite location", pathlib.Path, default=".state"),
    Option(
        "--shutdown-grace",
        "MISSIONS_SHUTDOWN_GRACE",
        "seconds in-flight calls get to finish on shutdown",
        seconds(),
        default="5",
    ),
    *RETENTION,
    Option(
        "--reap-interval",
        "MISSIONS_REAP_INTERVAL",
        "seconds between sweeps for attempts of lost workers",
        seconds(positive=True),
        default="1",
    ),
    Option(
        "--watch-heartbeat",
        "MISSIONS_WATCH_HEARTBEAT",
        "seconds of silence after which a WatchEvents stream gets a heartbeat",
        seconds(positive=True),
        default="15",
    ),
    Option(
        "--watch-buffer",
        "MISSIONS_WATCH_BUFFER",
        "events a WatchEvents subscriber may have waiting before it is cut off as too slow (RESOURCE_EXHAUSTED)",
        integer(1),
        default=str(DEFAULT_BUFFER),
    ),
    Option(
        "--recent-events",
        "MISSIONS_RECENT_EVENTS",
        "latest events kept in memory, so that a WatchEvents stream starting among them (a client watching the"
        " mission it just submitted) never reads the broker's log; 0: none",
        integer(0),
        default=str(DEFAULT_RECENT_EVENTS),
    ),
    Option(
        "--recent-events-bytes",
        "MISSIONS_RECENT_EVENTS_BYTES",
        "bound of those events' encoded size, the oldest dropped first (32 MiB)",
        integer(0),
        default=str(DEFAULT_RECENT_BYTES),
    ),
    METRICS_LISTEN,
    TRACING,
)

# TLS, mTLS, tokens and the stream quota (docs/security.md).
_SECURITY = (
    Option("--tls-cert", "MISSIONS_TLS_CERT", "server certificate chain (PEM); turns TLS on", pathlib.Path),
    Option("--tls-key", "MISSIONS_TLS_KEY", "private key of --tls-cert (PEM)", pathlib.Path),
    Option(
        "--tls-client-ca",
        "MISSIONS_TLS_CLIENT_CA",
        "clients must present a certificate signed by this CA (mTLS)",
        pathlib.Path,
    ),
    Option(
        "--tokens-file",
        "MISSIONS_TOKENS_FILE",
        "bearer token hashes -> principal and roles; turns authentication on",
        pathlib.Path,
    ),
    Option(
        "--insecure",
        "MISSIONS_INSECURE",
        "allow a non-loopback --listen or --http-listen without TLS or authentication",
        boolean,
    ),
    Option(
        "--max-watch-streams",
        "MISSIONS_MAX_WATCH_STREAMS",
        "concurrent WatchEvents streams per principal, 0: no limit",
        integer(0),
        default=str(DEFAULT_MAX_WATCH_STREAMS),
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The flags of `mission-service`, each defaulting to its MISSIONS_* variable."""
    parser = argparse.ArgumentParser(
        prog="mission-service",
        description="gRPC MissionService on RabbitMQ",
        epilog="mission-service hash-token [--generate]: print the SHA-256 a --tokens-file stores for a token"
        " (docs/security.md)",
    )
    add_options(parser, (*COMMON, *_SERVICE, *_SECURITY))
    add_limit_options(parser)
    return parser


def parse(argv: list[str] | None = None) -> tuple[ServiceSettings, argparse.Namespace]:
    """Settings from flags; cross-checks the values that depend on each other (usage errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = ServiceSettings(
        amqp_url=args.amqp_url,
        namespace=args.namespace,
        listen=args.listen,
        http_listen=args.http_listen,
        state_dir=args.state_dir,
        shutdown_grace=args.shutdown_grace,
        reap_interval=args.reap_interval,
        watch_heartbeat=args.watch_heartbeat,
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
        metrics_listen=args.metrics_listen,
        tracing=args.tracing,
    )
    if args.tokens_file is not None:
        try:
            TokenTable.load(args.tokens_file)
        except ValueError as exc:
            parser.error(f"--tokens-file: {exc}")
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
