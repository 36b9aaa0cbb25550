"""Domain exceptions -> gRPC status, in one table, with google.rpc error details."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mission_service.watch import ServiceStoppingError, StreamEndedError, SubscriberLaggingError
from missions import errors
from missions.metadata import LAST_SEQUENCE_KEY
from missions.v1 import mission_service_pb2 as pb

__all__ = ["to_status", "to_submit_error", "translate_errors"]

log = logging.getLogger(__name__)

DOMAIN = "missions.v1"

# Most specific first: the first matching class wins.
_TABLE: list[tuple[type[BaseException], grpc.StatusCode, str]] = [
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND, "MISSION_NOT_FOUND"),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED"),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION, "MISSION_FINISHED"),
    (errors.BrokerUnavailableError, grpc.StatusCode.UNAVAILABLE, "BROKER_UNAVAILABLE"),
    (errors.LogTruncatedError, grpc.StatusCode.OUT_OF_RANGE, "POSITION_BEFORE_RETENTION"),
    (SubscriberLaggingError, grpc.StatusCode.RESOURCE_EXHAUSTED, "SUBSCRIBER_TOO_SLOW"),
    (ServiceStoppingError, grpc.StatusCode.UNAVAILABLE, "SERVICE_STOPPING"),
]


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _classify(exc: BaseException) -> tuple[grpc.StatusCode, str, BaseException]:
    """The code and ErrorInfo reason of ``exc``, and the exception to describe to the client:
    an unexpected one is logged and replaced by an INTERNAL error naming a log id."""
    match = next(((code, reason) for kind, code, reason in _TABLE if isinstance(exc, kind)), None)
    if match is None:
        error_id = uuid.uuid4().hex[:12]
        log.error("unexpected error %s", error_id, exc_info=exc)
        return grpc.StatusCode.INTERNAL, "INTERNAL", RuntimeError(f"internal error (id {error_id})")
    code, reason = match
    if isinstance(exc, errors.FailedPreconditionError):
        reason = exc.reason
    return code, reason, exc


def to_submit_error(exc: BaseException) -> pb.SubmitMissionError:
    """What SubmitMission would have answered for ``exc``, as one result of a SubmitMissions batch."""
    code, reason, exc = _classify(exc)
    field = exc.field if isinstance(exc, errors.InvalidArgumentError) else ""
    return pb.SubmitMissionError(code=code.value[0], message=str(exc), reason=reason, field=field)


def to_status(exc: BaseException) -> grpc.Status:
    """The status a client receives for ``exc``; unexpected errors become INTERNAL with an id."""
    code, reason, exc = _classify(exc)
    metadata = {}
    if isinstance(exc, StreamEndedError):
        metadata["last_sequence"] = str(exc.last_sequence)
    if isinstance(exc, errors.LogTruncatedError):
        metadata["oldest_sequence"] = str(exc.oldest_sequence)
    details = [_packed(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata))]
    if isinstance(exc, errors.InvalidArgumentError):
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)
        details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=str(exc), details=details)
    converted = rpc_status.to_status(status)
    if metadata.get("last_sequence"):
        extra = ((LAST_SEQUENCE_KEY, metadata["last_sequence"]),)
        converted = converted._replace(trailing_metadata=converted.trailing_metadata + extra)
    return cast(grpc.Status, converted)


F = TypeVar("F", bound=Callable[..., Any])


def translate_errors(method: F) -> F:
    """Wrap a servicer method (unary or server-streaming) so exceptions abort with a status."""

    async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        status = to_status(exc)
        await context.abort(status.code, status.details, status.trailing_metadata)

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
            except Exception as exc:
                await abort(context, exc)

        return cast(F, stream)

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:
            await abort(context, exc)

    return cast(F, unary)
