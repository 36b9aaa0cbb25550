"""Configuration of one mission-worker process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from missions.brokers import redact_url
from missions.tls import TlsFiles
from worker_service.ledger import DEFAULT_REMEMBER_FINISHED

__all__ = ["WorkerSettings"]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Everything mission-worker needs; built by cli.py from flags and MISSIONS_* variables.

    Attributes:
        amqp_url: broker URL (MISSIONS_AMQP_URL).
        namespace: prefix of every exchange and queue (MISSIONS_NAMESPACE).
        worker_id: identity in STARTED events, default "<host>:<pid>".
        concurrency: attempts run at once, default 8; as many deliveries more may wait
            for a slot (the prefetch count, shared by the work queues of every served type).
        mission_types: the mission types to serve, among those of the handler registry that
            run_worker is given (none: all of them; cli.py loads the --handlers modules into it).
        retry_base: backoff base; attempt n waits up to base * 2^(n-1), default 1 s.
        retry_max: backoff cap, default 5 min.
        default_timeout: attempt timeout when the mission sets none, default 5 min.
        drain_timeout: on shutdown, how long running missions may finish, default 30 s.
        cancel_grace: how long a cancelled or timed-out handler may take to return after
            ``ctx.cancelled`` is set before its task is cancelled, default 5 s.
        heartbeat_interval: how often the worker announces itself, default 5 s.
        health_listen: address of the worker's gRPC health service ("" = none).
        metrics_listen: HOST:PORT of the Prometheus metrics endpoint ("" = none).
        amqp_tls: broker CA and client certificate for an amqps:// URL.
        tracing: OpenTelemetry spans: "off" (default), "console" or "otlp" (docs/tracing.md).
        remember_finished: missions the ledger keeps to drop stale work messages for them
            without starting them (the most recently heard of), default 100,000.
    """

    amqp_url: str
    namespace: str
    worker_id: str
    concurrency: int = 8
    mission_types: tuple[str, ...] = ()
    retry_base: timedelta = timedelta(seconds=1)
    retry_max: timedelta = timedelta(minutes=5)
    default_timeout: timedelta = timedelta(minutes=5)
    drain_timeout: timedelta = timedelta(seconds=30)
    cancel_grace: timedelta = timedelta(seconds=5)
    heartbeat_interval: timedelta = timedelta(seconds=5)
    health_listen: str = ""
    metrics_listen: str = ""
    amqp_tls: TlsFiles | None = None
    tracing: str = "off"
    remember_finished: int = DEFAULT_REMEMBER_FINISHED

    def __repr__(self) -> str:
        return (
            f"WorkerSettings(amqp_url={redact_url(self.amqp_url)!r}, namespace={self.namespace!r},"
            f" worker_id={self.worker_id!r}, concurrency={self.concurrency})"
        )
