"""Composition root of mission-service: builds every component and owns their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mission_service.auth import AuthInterceptor
from mission_service.dispatch import Dispatcher
from mission_service.follower import LogFollower
from mission_service.legacy_work import drain_legacy_work
from mission_service.metrics import ServiceMetrics
from mission_service.operations import MissionOperations, OperationsConfig
from mission_service.quota import StreamQuota
from mission_service.reaper import Reaper
from mission_service.recent import RecentEvents
from mission_service.servicer import MissionServicer
from mission_service.settings import ServiceSettings, is_loopback
from mission_service.start_verdicts import StartVerdictSender
from mission_service.state_lock import StateLock
from mission_service.store import MissionStore
from mission_service.tokens import TokenFile
from mission_service.validation import RejectMalformedRequests
from mission_service.watch import Hub
from mission_service.workers import WorkerRegistry
from missions import amqp, tracing
from missions.eventlog import EventPublisher
from missions.health import HealthConditions
from missions.metrics import serving
from missions.outbox import Outbox
from missions.startup import EXCLUSIVE_PORT, add_port
from missions.topology import Topology
from missions.v1 import events_pb2, mission_service_pb2, mission_service_pb2_grpc

if TYPE_CHECKING:
    from missions.tracing import Tracing

__all__ = ["serve"]

log = logging.getLogger(__name__)

SERVICE_NAME = mission_service_pb2.DESCRIPTOR.services_by_name["MissionService"].full_name


async def serve(settings: ServiceSettings, stop: asyncio.Event, bound: asyncio.Future[int] | None = None) -> None:
    """Run the service until ``stop`` is set; ``bound`` receives the listening port."""
    names = Topology(settings.namespace)
    source = f"mission-service/{socket.gethostname()}:{os.getpid()}"
    health_state = HealthConditions(SERVICE_NAME, "publisher connection", "log connection", "log follower")
    await health_state.set("log follower", False)
    async with contextlib.AsyncExitStack() as stack:
        # Before anything touches the broker: a second service on this directory stops here.
        stack.enter_context(StateLock.acquire(settings.state_dir))
        spans = tracing.configure(settings.tracing, "mission-service", source)
        if spans is not None:
            stack.callback(spans.shutdown)  # last, after every span has ended
        # Publishing and reading the log use separate connections, so a publisher blocked
        # by a broker resource alarm never stalls the follower and the watchers.
        connection = await amqp.connect(settings.amqp_url, source, settings.amqp_tls)
        stack.push_async_callback(connection.close)
        log_connection = await amqp.connect(settings.amqp_url, f"{source}/log", settings.amqp_tls)
        stack.push_async_callback(log_connection.close)
        await health_state.track(connection, "publisher connection")
        await health_state.track(log_connection, "log connection")

        publisher = await EventPublisher.open(connection, names, settings.retention, decides=True)
        legacy_work = asyncio.create_task(drain_legacy_work(connection, publisher, names), name="legacy-work")
        stack.push_async_callback(_cancelled, legacy_work)
        store = MissionStore(settings.database)
        stack.callback(store.close)
        hub = Hub(head=store.checkpoint(), buffer=settings.watch_buffer)
        metrics = ServiceMetrics(store.get)
        metrics.reconnects.track(connection, "publisher")
        metrics.reconnects.track(log_connection, "log")

        def applied(batch: Sequence[events_pb2.MissionEvent]) -> None:
            metrics.count_applied(batch)
            hub.publish(batch)

        recent = RecentEvents(store.checkpoint(), settings.recent_events, settings.recent_bytes)
        # Answers are publishes: on the publisher's connection, so a resource alarm that
        # blocks it never blocks the log connection's reads.
        verdicts = StartVerdictSender(connection, names)
        follower = LogFollower(log_connection, names, store, applied, recent=recent, verdicts=verdicts)
        metrics.sample(hub, follower)
        if settings.metrics_listen:
            await stack.enter_async_context(serving(settings.metrics_listen, metrics.registry))

        workers = WorkerRegistry()
        await workers.start(log_connection, names)

        async def queue_depths(mission_types: Sequence[str]) -> tuple[dict[str, int], int]:
            queues = [*(names.work_queue(mission_type) for mission_type in mission_types), names.dead_letter_queue]
            *work, dead = await amqp.message_counts(connection, queues)
            return dict(zip(mission_types, work, strict=True)), dead

        config = OperationsConfig(
            namespace=settings.namespace,
            source=source,
            limits=settings.limits,
            watch_heartbeat=settings.watch_heartbeat,
        )
        dispatcher = Dispatcher(Outbox(publisher), follower.expect)
        operations = MissionOperations(
            config,
            publisher,
            dispatcher,
            store,
            follower,
            hub,
            follower.replay,
            workers,
            queue_depths,
            metrics.published,
        )

        server = _grpc_server(settings, stack, spans)
        mtls = settings.tls is not None and settings.tls.ca is not None
        servicer = MissionServicer(operations, StreamQuota(settings.max_watch_streams), client_certificates=mtls)
        mission_service_pb2_grpc.add_MissionServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(health_state.servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        credentials = settings.tls.server_credentials() if settings.tls is not None else None
        port = add_port(server, settings.listen, credentials)
        await server.start()
        log.info(
            "mission-service listening on %s (namespace %r, %s)",
            settings.listen,
            settings.namespace,
            _posture(settings),
        )
        if bound is not None:
            bound.set_result(port)

        reaper = Reaper(store, workers, operations.publish, source)
        follow = asyncio.create_task(follower.run(), name="log-follower")
        attached = asyncio.create_task(follower.attached.wait())
        stopping = asyncio.create_task(stop.wait())
        background = {follow}
        failed: list[asyncio.Task[None]] = []
        try:
            await asyncio.wait({attached, follow, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if attached.done():
                await health_state.set("log follower", True)
                background.add(
                    asyncio.create_task(reaper.run(log_connection, names, settings.reap_interval), name="reaper")
                )
                await asyncio.wait({*background, stopping}, return_when=asyncio.FIRST_COMPLETED)
            # The follower and the reaper run until cancelled below: one that ended already,
            # even by a cancellation nobody asked for, stops the replica with an error.
            failed = [task for task in background if task.done()]
        finally:
            log.info("mission-service stopping")
            await health_state.servicer.enter_graceful_shutdown()
            hub.close()  # streams end with UNAVAILABLE and their position, before the grace period
            await server.stop(settings.shutdown_grace_s)
            for task in (*background, attached, stopping):
                task.cancel()
            await asyncio.gather(*background, attached, stopping, return_exceptions=True)
            await dispatcher.close()
            await publisher.close()
        if failed:
            task = failed[0]
            if task.cancelled():
                raise RuntimeError(f"background task {task.get_name()} was cancelled")
            raise RuntimeError(f"background task {task.get_name()} stopped") from task.exception()


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel a helper task that runs until cancelled, and say if it had failed before."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except Exception as exc:
            log.error("%s had failed: %r", task.get_name(), exc)


def _grpc_server(settings: ServiceSettings, stack: contextlib.AsyncExitStack, spans: Tracing | None) -> grpc.aio.Server:
    """The server with its options, the tracing interceptor when tracing is on and, with a tokens
    file, the auth interceptor (reloaded on SIGHUP)."""
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if spans is not None:
        # Outermost, so a call's span covers the others' refusals too.
        interceptors.append(spans.server_interceptor(SERVICE_NAME))
    # Bodies that do not parse are INVALID_ARGUMENT rather than an opaque INTERNAL.
    interceptors.append(RejectMalformedRequests())
    if settings.tokens_file is not None:
        tokens = TokenFile(settings.tokens_file)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, tokens.reload)
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)
        interceptors.append(AuthInterceptor(tokens))
    return grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.limits.max_request_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            EXCLUSIVE_PORT,
        ],
    )


def _posture(settings: ServiceSettings) -> str:
    """How exposed the service is, for its start-up log line: INSECURE unless it has TLS and authentication."""
    mtls = settings.tls is not None and settings.tls.ca is not None
    transport = "plaintext" if settings.tls is None else "mTLS" if mtls else "TLS"
    auth = "bearer tokens" if settings.tokens_file else "client certificates" if mtls else "no authentication"
    if settings.tls is not None and settings.authenticated:
        return f"{transport}, {auth}"
    where = "loopback only" if is_loopback(settings.listen) else "NOT loopback: --insecure"
    return f"INSECURE: {transport}, {auth}, {where}"
