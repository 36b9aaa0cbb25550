"""The spans: one per MissionService call (a server interceptor) and one per mission attempt."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from missions.outcomes import Outcome
from missions.tracing._propagation import from_headers, from_metadata
from missions.v1 import mission_pb2, mission_service_pb2

__all__ = ["Tracing"]

MISSION_ID = "mission.id"
MISSION_TYPE = "mission.type"
# What the log lines of the mission carry too (missions.logs), to go from a trace to its logs.
CORRELATION_ID = "mission.correlation_id"
# Request fields are the caller's input, not yet validated: keep them short.
_MAX_ATTRIBUTE = 256
# Codes a server span counts as errors (OpenTelemetry's RPC conventions): the rest are the caller's.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class Tracing:
    """The spans of one process, from ``provider``; built by ``missions.tracing.configure``."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("missions")

    def server_interceptor(self, service: str) -> grpc.aio.ServerInterceptor:
        """A span for each unary call of ``service`` (full name), continuing the caller's trace."""
        return _ServerSpans(self._tracer, service)

    async def attempt(
        self,
        headers: Mapping[str, Any] | None,
        routing_key: str,
        mission: mission_pb2.Mission,
        run: Awaitable[Outcome | None],
    ) -> None:
        """Await ``run``, one attempt of ``mission``, in a consumer span continuing the work message's trace.

        ``run`` gives the attempt's outcome, or None when it never started (handed back to
        the queue). Every event published meanwhile carries this span's context.
        """
        attributes: dict[str, AttributeValue] = {
            MISSION_ID: mission.id,
            MISSION_TYPE: mission.type,
            "mission.attempt": mission.attempt,
            CORRELATION_ID: mission.correlation_id,
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.rabbitmq.destination.routing_key": routing_key,
        }
        name = f"mission execute {mission.type}"
        with self._tracer.start_as_current_span(
            name, context=from_headers(headers), kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            _record_outcome(span, await run)

    def shutdown(self) -> None:
        """Export the spans still waiting, then stop exporting."""
        self._provider.shutdown()


def _record_outcome(span: Span, outcome: Outcome | None) -> None:
    if outcome is None:
        span.set_attribute("mission.outcome", "not_started")
        return
    error = outcome.error
    if error is None:
        span.set_attribute("mission.outcome", "succeeded")
        return
    span.set_attributes({"mission.outcome": "failed", "error.type": error.type, "mission.retryable": error.retryable})
    # The handler's exception, as the mission records it (MissionError), in OpenTelemetry's terms.
    span.add_event("exception", {"exception.type": error.type, "exception.message": error.message})
    span.set_status(Status(StatusCode.ERROR, f"{error.type}: {error.message}"))


class _ServerSpans(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Starts a SERVER span around each unary call of one service, named ``<service>/<method>``.

    Its parent is the ``traceparent`` of the call's metadata, when there is one. Streams
    (WatchEvents) have none: a span would stay open for the whole subscription.
    """

    def __init__(self, tracer: trace.Tracer, service: str) -> None:
        self._tracer = tracer
        self._prefix = f"/{service}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if (
            handler is None
            or not method.startswith(self._prefix)
            or handler.request_streaming
            or handler.response_streaming
            or not inspect.iscoroutinefunction(handler.unary_unary)
        ):
            return handler
        parent = from_metadata(handler_call_details.invocation_metadata)
        return handler._replace(unary_unary=self._traced(handler.unary_unary, method, parent))

    def _traced(self, behavior: Callable[..., Awaitable[Any]], method: str, parent: Context) -> Callable[..., Any]:
        service, _, name = method[1:].partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._tracer.start_as_current_span(
                method[1:],
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                span.set_attributes(_mission_attributes(request))
                try:
                    response = await behavior(request, context)
                    span.set_attributes(_mission_attributes(response))
                    return response
                finally:
                    _record_status(span, context)

        return unary


def _record_status(span: Span, context: grpc.aio.ServicerContext) -> None:
    """The call's status code, set by context.abort(); none means OK."""
    code = context.code() or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, str(context.details() or code.name)))


def _mission_attributes(message: object) -> dict[str, str]:
    """mission.id and mission.type, as far as a request or response names them."""
    if isinstance(message, mission_service_pb2.SubmitMissionRequest):
        return {MISSION_TYPE: message.type[:_MAX_ATTRIBUTE]}
    mission = getattr(message, "mission", None)
    if isinstance(mission, mission_pb2.Mission):
        return {MISSION_ID: mission.id, MISSION_TYPE: mission.type, CORRELATION_ID: mission.correlation_id}
    mission_id = getattr(message, "mission_id", None)
    return {MISSION_ID: mission_id[:_MAX_ATTRIBUTE]} if isinstance(mission_id, str) and mission_id else {}
