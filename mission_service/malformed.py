"""A server interceptor that answers a request body that does not parse with INVALID_ARGUMENT.

Its status carries the same details as every other refusal: ErrorInfo INVALID_ARGUMENT,
and a BadRequest naming the field ``request`` (the body as a whole).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from mission_service.status import abort
from missions.errors import InvalidArgumentError

__all__ = ["RejectMalformedRequests"]


class _Malformed:
    """Stands in for a request body that does not parse, until the handler can refuse it."""

    __slots__ = ("error",)

    def __init__(self, error: DecodeError) -> None:
        self.error = error


async def _refuse_malformed(request: object, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, _Malformed):
        # The parser's words only (never the client's bytes): they name the message type.
        await abort(context, InvalidArgumentError("request", str(request.error)))


class RejectMalformedRequests(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Answers a request body that does not parse with INVALID_ARGUMENT.

    Left to grpcio, a parse failure (random bytes, a message nested deeper than the
    protobuf parser's recursion limit) is UNKNOWN, with a traceback in the log.
    Requests of client-streaming methods are left alone (this service has none).
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        kind = "unary_stream" if handler.response_streaming else "unary_unary"
        behavior = getattr(handler, kind)
        if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
            return handler
        return handler._replace(
            request_deserializer=_tolerant(handler.request_deserializer), **{kind: _guarded(behavior)}
        )


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except DecodeError as exc:
            return _Malformed(exc)

    return parse


def _guarded(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await _refuse_malformed(request, context)
            async for item in behavior(request, context):
                yield item

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _refuse_malformed(request, context)
        return await behavior(request, context)

    return unary
