"""Configuration of one mission-service process."""

from __future__ import annotations

import ipaddress
import pathlib
from dataclasses import dataclass, field
from datetime import timedelta

from mission_service.limits import Limits
from mission_service.recent import DEFAULT_RECENT_BYTES, DEFAULT_RECENT_EVENTS
from mission_service.watch import DEFAULT_BUFFER
from missions.amqp import LogRetention
from missions.brokers import redact_url
from missions.metadata import DEFAULT_ADDRESS
from missions.tls import TlsFiles

__all__ = ["DEFAULT_MAX_WATCH_STREAMS", "ServiceSettings", "is_loopback"]

# Concurrent WatchEvents streams one authenticated principal may hold.
DEFAULT_MAX_WATCH_STREAMS = 100


def is_loopback(listen: str) -> bool:
    """Whether a HOST:PORT bind address only accepts connections from this machine."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name (or "" for every interface) may resolve to anything
        return False


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Everything mission-service needs; built by cli.py from flags and MISSIONS_* variables.

    Attributes:
        amqp_url: broker URL (MISSIONS_AMQP_URL), default amqp://guest:guest@localhost:5672/.
        namespace: prefix of every exchange and queue (MISSIONS_NAMESPACE), default "missions".
        listen: gRPC bind address (MISSIONS_LISTEN), default 127.0.0.1:50051.
        http_listen: bind address of the HTTP/JSON API (MISSIONS_HTTP_LISTEN, docs/http.md);
            "" (the default) serves none. Same TLS, authentication and exposure rules as ``listen``.
        state_dir: directory of the SQLite read model (MISSIONS_STATE_DIR), default ./.state.
        shutdown_grace: how long in-flight RPCs get to finish on SIGTERM, default 5 s.
        reap_interval: how often lost workers' attempts are looked for, default 1 s.
        watch_heartbeat: idle time after which a WatchEvents stream gets a heartbeat, 15 s.
        watch_buffer: events a WatchEvents subscriber may have waiting before it is cut off.
        recent_events, recent_bytes: bounds of the window of latest events kept in memory,
            from which WatchEvents replays that start inside it are served without the
            broker (mission_service/recent.py); 0 events turns it off.
        retention: event log retention (see LogRetention).
        limits: input limits (see Limits).
        tls: server certificate and key, and the client CA that turns on mTLS
            (--tls-cert, --tls-key, --tls-client-ca); None serves plaintext.
        tokens_file: bearer tokens and their principals (--tokens-file); None turns
            authentication off and every caller may do everything.
        insecure: allow a non-loopback ``listen`` or ``http_listen`` without TLS or authentication (--insecure).
        max_watch_streams: concurrent WatchEvents streams per authenticated principal,
            default 100; 0 for no limit.
        amqp_tls: broker CA and client certificate for an amqps:// URL.
        metrics_listen: HOST:PORT of the Prometheus metrics endpoint ("" = none).
        tracing: OpenTelemetry spans: "off" (default), "console" or "otlp" (docs/tracing.md).
        queue_timeout: how long SubmitMission and RedriveMission wait for the broker to
            confirm their event and work message before answering UNAVAILABLE, 5 s (no flag).
    """

    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    namespace: str = "missions"
    listen: str = DEFAULT_ADDRESS
    http_listen: str = ""
    state_dir: pathlib.Path = pathlib.Path(".state")
    shutdown_grace: timedelta = timedelta(seconds=5)
    reap_interval: timedelta = timedelta(seconds=1)
    watch_heartbeat: timedelta = timedelta(seconds=15)
    watch_buffer: int = DEFAULT_BUFFER
    recent_events: int = DEFAULT_RECENT_EVENTS
    recent_bytes: int = DEFAULT_RECENT_BYTES
    retention: LogRetention = field(default_factory=LogRetention)
    limits: Limits = field(default_factory=Limits)
    tls: TlsFiles | None = None
    tokens_file: pathlib.Path | None = None
    insecure: bool = False
    max_watch_streams: int = DEFAULT_MAX_WATCH_STREAMS
    amqp_tls: TlsFiles | None = None
    metrics_listen: str = ""
    tracing: str = "off"
    queue_timeout: timedelta = timedelta(seconds=5)

    def __repr__(self) -> str:
        return (
            f"ServiceSettings(amqp_url={redact_url(self.amqp_url)!r}, namespace={self.namespace!r},"
            f" listen={self.listen!r}, http_listen={self.http_listen!r}, state_dir={str(self.state_dir)!r},"
            f" tls={self.tls is not None},"
            f" tokens_file={str(self.tokens_file) if self.tokens_file else None!r})"
        )

    @property
    def client_certificates(self) -> bool:
        """Whether clients must present a certificate signed by the client CA (mTLS), whose name identifies them."""
        return self.tls is not None and self.tls.ca is not None

    @property
    def authenticated(self) -> bool:
        """Whether callers must prove who they are: a bearer token, or a client certificate (mTLS)."""
        return self.tokens_file is not None or self.client_certificates

    def exposure_problem(self) -> str | None:
        """Why ``listen`` or ``http_listen`` is unsafe as configured, or None: off loopback, TLS and
        authentication are required."""
        missing = [
            name for name, ok in (("TLS", self.tls is not None), ("authentication", self.authenticated)) if not ok
        ]
        exposed = [
            f"{flag} {address}"
            for flag, address in (("--listen", self.listen), ("--http-listen", self.http_listen))
            if address and not is_loopback(address)
        ]
        if not missing or not exposed:
            return None
        return (
            f"{' and '.join(exposed)}: not a loopback address and the service has no {' and no '.join(missing)}"
            " (--tls-cert/--tls-key, --tokens-file or --tls-client-ca); pass --insecure to serve it anyway"
        )

    @property
    def database(self) -> pathlib.Path:
        return self.state_dir / f"{self.namespace}.sqlite3"
