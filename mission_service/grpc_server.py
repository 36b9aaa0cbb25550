"""The gRPC server of mission-service: its options, interceptors, health and reflection,
and the order in which it stops."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mission_service.auth import AuthInterceptor
from mission_service.malformed import RejectMalformedRequests
from mission_service.servicer import MissionServicer
from mission_service.settings import ServiceSettings, is_loopback
from mission_service.tokens import TokenFile
from mission_service.watch import Hub
from missions.health import HealthConditions
from missions.startup import EXCLUSIVE_PORT, add_port
from missions.v1 import mission_service_pb2, mission_service_pb2_grpc

if TYPE_CHECKING:
    from missions.tracing import Tracing

__all__ = ["SERVICE_NAME", "posture", "serving_grpc"]

SERVICE_NAME = mission_service_pb2.DESCRIPTOR.services_by_name["MissionService"].full_name


@contextlib.asynccontextmanager
async def serving_grpc(
    settings: ServiceSettings,
    servicer: MissionServicer,
    hub: Hub,
    health: HealthConditions,
    spans: Tracing | None,
    tokens: TokenFile | None = None,
) -> AsyncIterator[int]:
    """The gRPC server, with health and reflection, serving until exit; yields its port.
    With ``tokens``, callers need a bearer token.

    On exit: health NOT_SERVING, every watch stream ended with UNAVAILABLE and its position
    (so clients resume elsewhere before the grace period), then the server stopped.
    """
    server = grpc.aio.server(
        interceptors=_interceptors(spans, tokens),
        options=[
            ("grpc.max_receive_message_length", settings.limits.max_request_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            EXCLUSIVE_PORT,
        ],
    )
    mission_service_pb2_grpc.add_MissionServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    credentials = settings.tls.server_credentials() if settings.tls is not None else None
    port = add_port(server, settings.listen, credentials)
    try:
        await server.start()
        yield port
    finally:
        await health.servicer.enter_graceful_shutdown()
        hub.close()
        await server.stop(settings.shutdown_grace.total_seconds())


def _interceptors(spans: Tracing | None, tokens: TokenFile | None) -> list[grpc.aio.ServerInterceptor]:
    """Tracing when it is on, the refusal of bodies that do not parse and, with ``tokens``, authentication."""
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if spans is not None:
        # Outermost, so a call's span covers the others' refusals too.
        interceptors.append(spans.server_interceptor(SERVICE_NAME))
    # Bodies that do not parse are INVALID_ARGUMENT rather than an opaque INTERNAL.
    interceptors.append(RejectMalformedRequests())
    if tokens is not None:
        interceptors.append(AuthInterceptor(tokens))
    return interceptors


def posture(settings: ServiceSettings, listen: str) -> str:
    """How exposed the service is on ``listen``, for its start-up log lines: INSECURE unless it
    has TLS and authentication."""
    mtls = settings.client_certificates
    transport = "plaintext" if settings.tls is None else "mTLS" if mtls else "TLS"
    auth = "bearer tokens" if settings.tokens_file else "client certificates" if mtls else "no authentication"
    if settings.tls is not None and settings.authenticated:
        return f"{transport}, {auth}"
    where = "loopback only" if is_loopback(listen) else "NOT loopback: --insecure"
    return f"INSECURE: {transport}, {auth}, {where}"
