"""Configuration of one mission-service process."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from datetime import timedelta

from mission_service.validation import Limits
from missions.amqp import LogRetention, redact_url

__all__ = ["ServiceSettings"]


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Everything mission-service needs; built by cli.py from flags and MISSIONS_* variables.

    Attributes:
        amqp_url: broker URL (MISSIONS_AMQP_URL), default amqp://guest:guest@localhost:5672/.
        namespace: prefix of every exchange and queue (MISSIONS_NAMESPACE), default "missions".
        listen: gRPC bind address (MISSIONS_LISTEN), default 127.0.0.1:50051.
        state_dir: directory of the SQLite read model (MISSIONS_STATE_DIR), default ./.state.
        shutdown_grace_s: seconds in-flight RPCs get to finish on SIGTERM, default 5.
        reap_interval: how often lost workers' attempts are looked for, default 1 s.
        watch_heartbeat: idle time after which a WatchEvents stream gets a heartbeat, 15 s.
        retention: event log retention (see LogRetention).
        limits: input limits (see Limits).
    """

    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    namespace: str = "missions"
    listen: str = "127.0.0.1:50051"
    state_dir: pathlib.Path = pathlib.Path(".state")
    shutdown_grace_s: float = 5.0
    reap_interval: timedelta = timedelta(seconds=1)
    watch_heartbeat: timedelta = timedelta(seconds=15)
    retention: LogRetention = field(default_factory=LogRetention)
    limits: Limits = field(default_factory=Limits)

    def __repr__(self) -> str:
        return (
            f"ServiceSettings(amqp_url={redact_url(self.amqp_url)!r}, namespace={self.namespace!r},"
            f" listen={self.listen!r}, state_dir={str(self.state_dir)!r})"
        )

    @property
    def database(self) -> pathlib.Path:
        return self.state_dir / f"{self.namespace}.sqlite3"
