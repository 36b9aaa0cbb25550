"""The Celery side's app and its noop task, isolated per run by names instead of a vhost.

The benchmark's worker runs ``celery -A bench.celery_app worker``, which can only be told
which run it belongs to through the environment (``BENCH_CELERY_*``, set by
``bench.celery_side``); the driver builds the same app in-process with ``make_app``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from celery import Celery

__all__ = ["NOOP", "CeleryNames", "app", "make_app"]

NOOP = "bench.noop"


@dataclass(frozen=True, slots=True)
class CeleryNames:
    """Every broker name one run uses, all derived from its unique ``prefix``."""

    prefix: str

    @property
    def queue(self) -> str:
        return self.prefix  # also the task exchange and routing key

    @property
    def event_exchange(self) -> str:
        return f"{self.prefix}.ev"

    @property
    def control_exchange(self) -> str:
        return self.prefix  # kombu's Mailbox adds ".pidbox" (and "reply." for replies)

    @property
    def exchanges(self) -> tuple[str, ...]:
        return (self.queue, self.event_exchange, f"{self.prefix}.pidbox", f"reply.{self.prefix}.pidbox")


def make_app(broker_url: str, names: CeleryNames, backend: str | None) -> Celery:
    """A Celery app on ``broker_url`` whose queue and exchanges are ``names``; ``backend`` None: no results."""
    celery = Celery("bench", broker=broker_url, backend=backend, set_as_current=False)
    celery.conf.update(
        task_default_queue=names.queue,
        task_default_exchange=names.queue,
        task_default_routing_key=names.queue,
        event_exchange=names.event_exchange,
        control_exchange=names.control_exchange,
        task_ignore_result=backend is None,
        broker_connection_retry_on_startup=True,
        # The benchmark's client threads share one producer pool: one producer each.
        broker_pool_limit=64,
        worker_hijack_root_logger=False,
    )
    celery.task(name=NOOP)(_noop)
    return celery


def _noop() -> None:
    """Does nothing, like the service's ``noop`` handler."""


app = make_app(
    os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    CeleryNames(os.environ.get("BENCH_CELERY_PREFIX", "bench-celery")),
    os.environ.get("BENCH_CELERY_BACKEND") or None,
)
