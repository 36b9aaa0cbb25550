"""Composition root of mission-worker."""

from __future__ import annotations

import asyncio
import logging

from missions import amqp
from missions.amqp import LogRetention
from missions.eventlog import EventPublisher
from missions.topology import Topology
from worker_service.consumer import MissionConsumer
from worker_service.handlers import default_registry, load_modules
from worker_service.settings import WorkerSettings

__all__ = ["run_worker"]

log = logging.getLogger(__name__)


async def run_worker(settings: WorkerSettings, stop: asyncio.Event, retention: LogRetention | None = None) -> None:
    """Run until ``stop`` is set, then drain running missions and close."""
    load_modules(settings.handler_modules)
    connection = await amqp.connect(settings.amqp_url, f"mission-worker/{settings.worker_id}")
    try:
        publisher = await EventPublisher.open(connection, Topology(settings.namespace), retention or LogRetention())
        consumer = MissionConsumer(settings, connection, publisher, default_registry)
        await consumer.run(stop)
        await publisher.close()
    finally:
        await connection.close()
    log.info("worker %s stopped", settings.worker_id)
