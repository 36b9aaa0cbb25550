"""Composition root of mission-service: builds every component and owns their lifecycle.

``build_service`` wires the components that hold no connection of their own (store,
hub, follower, commands, queries, servicer) to what the service needs of the broker
(``BrokerSide``); the servicer tests call it with a fake broker. ``serve`` connects to
RabbitMQ, builds the service, and runs it: resources are entered on one AsyncExitStack
in dependency order, so they close in reverse, and the loops that run until the stop
(follower, reaper, scheduler, legacy work) share one TaskGroup; the follower, the reaper or
the scheduler ending stops the replica (mission_service/loops.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from mission_service.commands import CommandsConfig, MissionCommands
from mission_service.dispatch import Dispatcher
from mission_service.follower import LogFollower, ReadLog
from mission_service.grpc_server import SERVICE_NAME, posture, serving_grpc
from mission_service.http.server import serving_http
from mission_service.legacy_dead_letters import drop_dead_letter_events
from mission_service.legacy_work import drain_legacy_work
from mission_service.loops import Loop, Loops
from mission_service.metrics import ServiceMetrics
from mission_service.operations import MissionOperations
from mission_service.queries import MissionQueries, QueriesConfig, QueueDepths
from mission_service.reaper import Reaper
from mission_service.recent import RecentEvents
from mission_service.scheduler import Scheduler
from mission_service.schedules import Schedules
from mission_service.servicer import MissionServicer
from mission_service.settings import ServiceSettings
from mission_service.start_verdicts import StartVerdictSender
from mission_service.state_lock import StateLock
from mission_service.store import MissionStore
from mission_service.tokens import reloaded_on_sighup
from mission_service.watch import Hub
from mission_service.worker_registry import WorkerRegistry
from missions import amqp, tracing
from missions.eventlog import EventPublisher, read_log
from missions.health import HealthConditions
from missions.metrics_http import serving
from missions.retrying_publisher import RetryingPublisher
from missions.startup import check_not_in_use
from missions.topology import Topology
from missions.v1 import events_pb2

if TYPE_CHECKING:
    from missions.tracing import Tracing

__all__ = ["BrokerSide", "Service", "build_service", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerSide:
    """What the service does with RabbitMQ once connected.

    Attributes:
        publisher: appends events to the log and dispatches work messages (EventPublisher).
        read_log: reads the log after a sequence, then follows it (eventlog.read_log).
        queue_depths: messages ready in the work queues of given types and the dead-letter queue.
        verdicts: answers the workers' STARTED events; None for a service no worker asks.
    """

    publisher: EventPublisher
    read_log: ReadLog
    queue_depths: QueueDepths
    verdicts: StartVerdictSender | None = None


@dataclass(frozen=True, slots=True)
class Service:
    """The components of one replica, as ``build_service`` wired them."""

    store: MissionStore
    hub: Hub
    follower: LogFollower
    workers: WorkerRegistry
    dispatcher: Dispatcher
    commands: MissionCommands
    queries: MissionQueries
    schedules: Schedules
    operations: MissionOperations
    servicer: MissionServicer


def build_service(
    settings: ServiceSettings,
    broker: BrokerSide,
    store: MissionStore,
    *,
    source: str,
    hub: Hub | None = None,
    workers: WorkerRegistry | None = None,
    metrics: ServiceMetrics | None = None,
) -> Service:
    """Wire a replica's components to ``broker``; nothing runs until the follower does."""
    hub = Hub(head=store.checkpoint(), buffer=settings.watch_buffer) if hub is None else hub
    on_batch = hub.publish if metrics is None else functools.partial(_count_then_publish, metrics, hub)
    recent = RecentEvents(store.checkpoint(), settings.recent_events, settings.recent_bytes)
    follower = LogFollower(broker.read_log, store, on_batch, recent=recent, verdicts=broker.verdicts)
    workers = WorkerRegistry() if workers is None else workers
    dispatcher = Dispatcher(RetryingPublisher(broker.publisher), follower.expect)
    commands = MissionCommands(
        CommandsConfig(
            namespace=settings.namespace,
            source=source,
            limits=settings.limits,
            queue_timeout=settings.queue_timeout.total_seconds(),
        ),
        broker.publisher,
        dispatcher,
        store,
        follower,
        None if metrics is None else metrics.published,
    )
    queries = MissionQueries(
        QueriesConfig(
            limits=settings.limits,
            watch_heartbeat=settings.watch_heartbeat,
            max_watch_streams=settings.max_watch_streams,
        ),
        store,
        follower,
        hub,
        workers,
        broker.queue_depths,
    )
    schedules = Schedules(commands, store, settings.limits, source)
    operations = MissionOperations(commands, queries, schedules)
    servicer = MissionServicer(operations, client_certificates=settings.client_certificates)
    return Service(store, hub, follower, workers, dispatcher, commands, queries, schedules, operations, servicer)


def _count_then_publish(metrics: ServiceMetrics, hub: Hub, batch: Sequence[events_pb2.MissionEvent]) -> None:
    metrics.count_applied(batch)
    hub.publish(batch)


async def serve(settings: ServiceSettings, stop: asyncio.Event, bound: asyncio.Future[int] | None = None) -> None:
    """Run the service until ``stop`` is set; ``bound`` receives the listening port.

    Stops in this order: health NOT_SERVING, watch streams (gRPC and SSE) ended with their
    position, the gRPC server after its grace period, the HTTP API after its own, the loops,
    work messages in flight, the publisher, SQLite, the broker connections, tracing, the
    state directory's lock.
    """
    names = Topology(settings.namespace)
    source = f"mission-service/{socket.gethostname()}:{os.getpid()}"
    health = HealthConditions(SERVICE_NAME, "publisher connection", "log connection", "log follower")
    await health.set("log follower", False)
    async with contextlib.AsyncExitStack() as stack:
        # Before anything touches the broker: a second service on this directory or this
        # port stops here, with one line.
        stack.enter_context(StateLock.acquire(settings.state_dir))
        for address in filter(None, (settings.listen, settings.http_listen, settings.metrics_listen)):
            check_not_in_use(address)
        spans = tracing.configure(settings.tracing, "mission-service", source)
        if spans is not None:
            stack.callback(spans.shutdown)  # after every span has ended
        connection, log_connection = await _connect(settings, source, stack, health)
        store = stack.enter_context(MissionStore(settings.database))
        publisher = await stack.enter_async_context(
            await EventPublisher.open(connection, names, settings.retention, decides=True)
        )
        broker = BrokerSide(
            publisher,
            functools.partial(read_log, log_connection, names),
            functools.partial(_queue_depths, connection, names),
            # Answers are publishes: on the publisher's connection, so a resource alarm that
            # blocks it never blocks the log connection's reads.
            StartVerdictSender(connection, names),
        )
        metrics = ServiceMetrics(store.get)
        service = build_service(settings, broker, store, source=source, metrics=metrics)
        await stack.enter_async_context(service.dispatcher)
        metrics.sample(service.hub, service.follower)
        metrics.reconnects.track(connection, "publisher")
        metrics.reconnects.track(log_connection, "log")
        if settings.metrics_listen:
            await stack.enter_async_context(serving(settings.metrics_listen, metrics.registry))
        await service.workers.start(log_connection, names)
        reaper = Reaper(service.store, service.workers, service.commands.publish, source)
        scheduler = Scheduler(service.store.due, service.store.next_due, reaper.leads, service.commands.fire)
        recurring = Scheduler(
            service.store.schedules_due, service.store.next_schedule_due, reaper.leads, service.schedules.fire
        )
        await _run(
            settings,
            service,
            _Running(health, spans, stop, bound),
            legacy=functools.partial(_clear_legacy, connection, publisher, names),
            reaping=functools.partial(reaper.run, log_connection, names, settings.reap_interval),
            scheduling=scheduler.run,
            firing=recurring.run,
        )


async def _clear_legacy(connection: AbstractConnection, publisher: EventPublisher, names: Topology) -> None:
    """Clear what earlier versions left in the broker: event copies in the dead-letter
    queue, then (for as long as the replica runs) work in the legacy work queue."""
    await drop_dead_letter_events(connection, publisher, names)
    await drain_legacy_work(connection, publisher, names)


@dataclass(frozen=True, slots=True)
class _Running:
    """What a running replica reports to and listens for."""

    health: HealthConditions
    spans: Tracing | None
    stop: asyncio.Event
    bound: asyncio.Future[int] | None


async def _run(
    settings: ServiceSettings,
    service: Service,
    running: _Running,
    *,
    legacy: Loop,
    reaping: Loop,
    scheduling: Loop,
    firing: Loop,
) -> None:
    """Serve gRPC (and HTTP) while the loops run, until the stop or until a loop fails (then raise its failure).

    The reaper and the schedulers (delayed missions, recurring schedules) start once the follower
    reads the log (they judge what the store says); the loops stop only after the servers: their
    calls use them.
    """
    try:
        async with asyncio.TaskGroup() as group:
            loops = Loops(group)
            loops.start("log-follower", service.follower.run)
            loops.start("legacy", legacy, may_end=True)
            async with contextlib.AsyncExitStack() as servers:
                tokens = servers.enter_context(reloaded_on_sighup(settings.tokens_file))
                if settings.http_listen:
                    # Entered first, so it stops last: the gRPC server's stop ends every watch
                    # stream, SSE ones too, with its position before either server waits for calls.
                    await servers.enter_async_context(serving_http(settings, service.operations, tokens))
                port = await servers.enter_async_context(
                    serving_grpc(settings, service.servicer, service.hub, running.health, running.spans, tokens)
                )
                log.info(
                    "mission-service listening on %s (namespace %r, %s)",
                    settings.listen,
                    settings.namespace,
                    posture(settings, settings.listen),
                )
                if running.bound is not None:
                    running.bound.set_result(port)
                if await _first(service.follower.attached.wait(), running.stop.wait(), loops.failed.wait()) == 0:
                    await running.health.set("log follower", True)
                    loops.start("reaper", reaping)
                    loops.start("scheduler", scheduling)
                    loops.start("schedules", firing)
                    await _first(running.stop.wait(), loops.failed.wait())
                log.info("mission-service stopping")
            loops.stop()
    except ExceptionGroup as failed:  # only the body raises: the loops report through ``failed``
        raise failed.exceptions[0] from failed.exceptions[0].__cause__
    if loops.failure is not None:
        raise loops.failure


async def _connect(
    settings: ServiceSettings, source: str, stack: contextlib.AsyncExitStack, health: HealthConditions
) -> tuple[AbstractRobustConnection, AbstractRobustConnection]:
    """The publisher's connection and the log's, closed with ``stack``: separate, so a
    publisher blocked by a broker resource alarm never stalls the follower and the watchers."""
    connections = []
    for name, condition in ((source, "publisher connection"), (f"{source}/log", "log connection")):
        connection = await stack.enter_async_context(await amqp.connect(settings.amqp_url, name, settings.amqp_tls))
        await health.track(connection, condition)
        connections.append(connection)
    return connections[0], connections[1]


async def _queue_depths(
    connection: AbstractConnection, names: Topology, mission_types: Sequence[str]
) -> tuple[dict[str, int], int]:
    queues = [*(names.work_queue(mission_type) for mission_type in mission_types), names.dead_letter_queue]
    *work, dead = await amqp.message_counts(connection, queues)
    return dict(zip(mission_types, work, strict=True)), dead


async def _first(*waits: Awaitable[object]) -> int:
    """The index of the first of ``waits`` to finish; the others are cancelled."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    return next(index for index, task in enumerate(tasks) if task in done)
