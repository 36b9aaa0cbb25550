"""Composition root of mission-worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from aio_pika.abc import AbstractRobustConnection

from missions import amqp, tracing
from missions.amqp import LogRetention
from missions.eventlog import EventPublisher
from missions.health import HealthConditions, serving_health
from missions.metrics_http import serving
from missions.retrying_publisher import RetryingPublisher
from missions.startup import check_not_in_use
from missions.topology import Topology
from worker_service.attempt import Attempts
from worker_service.consumer import MissionConsumer
from worker_service.handlers import HandlerRegistry, default_registry
from worker_service.heartbeat import Heartbeat
from worker_service.ledger import MissionLedger
from worker_service.metrics import WorkerMetrics
from worker_service.settings import WorkerSettings
from worker_service.verdicts import Verdicts

__all__ = ["WORKER_HEALTH_SERVICE", "run_worker"]

log = logging.getLogger(__name__)

# The health service name the worker reports under (besides the overall "").
WORKER_HEALTH_SERVICE = "missions.v1.Worker"

# How long the worker may take to read the control stream before it starts consuming.
_CATCH_UP_TIMEOUT_S = 120


async def run_worker(
    settings: WorkerSettings,
    stop: asyncio.Event,
    retention: LogRetention | None = None,
    registry: HandlerRegistry = default_registry,
) -> None:
    """Run the handlers of ``registry`` (those of ``settings.mission_types``, if set) until
    ``stop`` is set, then drain running missions and close.

    Start-up order: connect, declare the topology, read the control stream up to now,
    then consume work. Health is SERVING only while connected, following the control
    stream and consuming.
    """
    mission_types = settings.mission_types or tuple(registry.names)
    if not mission_types:
        raise ValueError("no handlers: this worker would serve no mission type")
    names = Topology(settings.namespace)
    health = HealthConditions(WORKER_HEALTH_SERVICE, "broker connection", "control stream", "consuming")
    metrics = WorkerMetrics()
    async with contextlib.AsyncExitStack() as stack:
        spans = tracing.configure(settings.tracing, "mission-worker", settings.worker_id)
        if spans is not None:
            stack.callback(spans.shutdown)  # last, after every attempt's span has ended
        if settings.metrics_listen:
            await stack.enter_async_context(serving(settings.metrics_listen, metrics.registry))
        if settings.health_listen:  # served once connected; checked before, so in use stops us at once
            check_not_in_use(settings.health_listen)
        connection = await stack.enter_async_context(
            await amqp.connect(settings.amqp_url, f"mission-worker/{settings.worker_id}", settings.amqp_tls)
        )
        await health.track(connection, "broker connection")
        metrics.reconnects.track(connection, "worker")
        if settings.health_listen:
            await stack.enter_async_context(serving_health(settings.health_listen, health))
        publisher = await stack.enter_async_context(
            await EventPublisher.open(connection, names, retention or LogRetention())
        )
        ledger = MissionLedger(settings.remember_finished)
        session = uuid.uuid4().hex
        retrying = RetryingPublisher(publisher, metrics.published)
        verdicts = Verdicts(names, session)
        await verdicts.listen(connection)
        attempts = Attempts(settings, retrying, registry, ledger, verdicts, session, metrics)
        consumer = MissionConsumer(settings, connection, retrying, attempts, ledger, mission_types, spans)
        metrics.sample(
            lambda: consumer.running,
            lambda: consumer.waiting,
            lambda: retrying.waiting,
            lambda: consumer.undecodable,
            lambda: attempts.awaiting_word,
        )
        await _work(connection, names, ledger, Heartbeat(settings, consumer), consumer, health, stop)
    log.info("worker %s stopped", settings.worker_id)


async def _work(
    connection: AbstractRobustConnection,
    names: Topology,
    ledger: MissionLedger,
    heartbeat: Heartbeat,
    consumer: MissionConsumer,
    health: HealthConditions,
    stop: asyncio.Event,
) -> None:
    """Read the control stream up to now, announce this worker, consume until ``stop``, then
    drain: the loops share one TaskGroup, so one that fails stops the worker."""
    async with asyncio.TaskGroup() as tasks:
        following = tasks.create_task(ledger.follow(connection, names))
        await asyncio.wait_for(ledger.caught_up.wait(), _CATCH_UP_TIMEOUT_S)
        await health.set("control stream", True)
        drained = asyncio.Event()
        tasks.create_task(heartbeat.run(connection, stop, drained))
        await heartbeat.announced.wait()
        consuming = tasks.create_task(consumer.run(stop))
        await consumer.consuming.wait()
        await health.set("consuming", True)
        stopping = tasks.create_task(stop.wait())
        await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
        await health.set("consuming", False)  # draining, or the consumer died
        await consuming
        drained.set()
        following.cancel()
