"""Domain errors -> gRPC status: one table (missions/status_codes.py), one translation, with google.rpc error details.

Every error the service answers with passes through ``classify``: into ``to_status`` from the
servicer's methods (``translate_errors``), the auth interceptor and the malformed-request
interceptor (``abort``), into each result of a SubmitMissions batch (``to_submit_error``), and
into the HTTP API's error bodies (mission_service/http/errors.py), with the same ``error_details``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from missions import errors
from missions.metadata import LAST_SEQUENCE_KEY
from missions.status_codes import STATUS_CODES
from missions.v1 import mission_service_pb2 as pb

__all__ = ["DOMAIN", "abort", "classify", "error_details", "to_status", "to_submit_error", "translate_errors"]

log = logging.getLogger(__name__)

DOMAIN = "missions.v1"
"""The ErrorInfo domain of every error the service answers with."""


def classify(exc: BaseException) -> tuple[grpc.StatusCode, errors.ServiceError]:
    """The code of ``exc`` and the error to describe to the client: an unexpected one is
    logged and replaced by an INTERNAL error naming a log id (never its own words)."""
    if isinstance(exc, errors.ServiceError):
        for kind, code in STATUS_CODES.items():
            if isinstance(exc, kind):
                return code, exc
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error %s", error_id, exc_info=exc)
    return grpc.StatusCode.INTERNAL, errors.ServiceError(f"internal error (id {error_id})")


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def error_details(error: errors.ServiceError) -> list[any_pb2.Any]:
    """The google.rpc details of ``error``: an ErrorInfo (reason, ``DOMAIN``, metadata) and, for
    INVALID_ARGUMENT, a BadRequest naming the field."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    details = [_packed(info)]
    if isinstance(error, errors.InvalidArgumentError):
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.description)
        details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    return details


def to_status(exc: BaseException) -> grpc.Status:
    """The status a client receives for ``exc``.

    The message is the error's, the details ``error_details``. A stream that
    ended early also carries its position as ``LAST_SEQUENCE_KEY`` trailing metadata.
    Unexpected errors become INTERNAL with a logged id.
    """
    code, error = classify(exc)
    details = error_details(error)
    status = rpc_status.to_status(status_pb2.Status(code=code.value[0], message=str(error), details=details))
    if isinstance(error, errors.StreamEndedError):
        position = ((LAST_SEQUENCE_KEY, str(error.last_sequence)),)
        status = status._replace(trailing_metadata=status.trailing_metadata + position)
    return cast(grpc.Status, status)


def to_submit_error(exc: BaseException) -> pb.SubmitMissionError:
    """What SubmitMission would have answered for ``exc``, as one result of a SubmitMissions batch."""
    code, error = classify(exc)
    field = error.field if isinstance(error, errors.InvalidArgumentError) else ""
    return pb.SubmitMissionError(code=code.value[0], message=str(error), reason=error.reason, field=field)


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """End the call with the status for ``exc`` (raises grpc.aio.AbortError, as context.abort does)."""
    status = to_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)


F = TypeVar("F", bound=Callable[..., Any])


def translate_errors(method: F) -> F:
    """Wrap a servicer method (unary or server-streaming) so exceptions abort with their status."""

    async def answer(context: grpc.aio.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, grpc.aio.AbortError):  # the call has its status already
            raise exc
        await abort(context, exc)

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in method(self, request, context):
                    yield item
            except Exception as exc:
                await answer(context, exc)

        return cast(F, stream)

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:
            await answer(context, exc)

    return cast(F, unary)
