"""Domain errors -> gRPC status codes with google.rpc details, in one table."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from mission_service.status import DOMAIN, to_status, to_submit_error, translate_errors
from missions import errors
from missions.errors import ServiceStoppingError, SubscriberLaggingError
from missions.metadata import LAST_SEQUENCE_KEY
from tests.unit.factories import details_of

DETAILS_KEY = "grpc-status-details-bin"


def _rich(status: grpc.Status) -> status_pb2.Status:
    blobs = [value for key, value in status.trailing_metadata if key == DETAILS_KEY]
    assert len(blobs) == 1
    rich = status_pb2.Status.FromString(blobs[0])
    assert rich.code == status.code.value[0]
    assert rich.message == status.details
    return rich


def _error_info(status: grpc.Status) -> error_details_pb2.ErrorInfo:
    [info] = details_of(_rich(status).details, error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    return info


class MissionGoneError(errors.NotFoundError):
    pass


@pytest.mark.parametrize(
    ("exc", "code", "reason"),
    [
        (errors.NotFoundError("mission 'x' not found"), grpc.StatusCode.NOT_FOUND, "MISSION_NOT_FOUND"),
        (MissionGoneError("gone"), grpc.StatusCode.NOT_FOUND, "MISSION_NOT_FOUND"),
        (errors.AlreadyExistsError("key reused"), grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED"),
        (errors.FailedPreconditionError("finished"), grpc.StatusCode.FAILED_PRECONDITION, "MISSION_FINISHED"),
        (errors.BrokerUnavailableError("no broker"), grpc.StatusCode.UNAVAILABLE, "BROKER_UNAVAILABLE"),
        (errors.LogTruncatedError(42), grpc.StatusCode.OUT_OF_RANGE, "POSITION_BEFORE_RETENTION"),
    ],
)
def test_each_domain_error_has_its_code(exc: Exception, code: grpc.StatusCode, reason: str) -> None:
    status = to_status(exc)
    assert status.code == code
    assert status.details == str(exc)
    info = _error_info(status)
    assert (info.reason, info.domain) == (reason, "missions.v1")
    assert _rich(status).code == getattr(code_pb2, code.name)
    assert details_of(_rich(status).details, error_details_pb2.BadRequest) == []


@pytest.mark.parametrize(
    ("exc", "code", "reason"),
    [
        (errors.InvalidArgumentError("type", "is required"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (
            errors.FailedPreconditionError("not dead", reason="NOT_DEAD_LETTERED"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "NOT_DEAD_LETTERED",
        ),
        (SubscriberLaggingError(7), grpc.StatusCode.RESOURCE_EXHAUSTED, "SUBSCRIBER_TOO_SLOW"),
        (ServiceStoppingError(7), grpc.StatusCode.UNAVAILABLE, "SERVICE_STOPPING"),
        (
            errors.ResourceExhaustedError("3 streams", reason="TOO_MANY_STREAMS"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_STREAMS",
        ),
        (errors.UnauthenticatedError("no", reason="TOKEN_MISSING"), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING"),
        (errors.UnauthenticatedError("who", reason="TOKEN_UNKNOWN"), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_UNKNOWN"),
        (
            errors.PermissionDeniedError("reader", reason="ROLE_REQUIRED"),
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_REQUIRED",
        ),
        (
            errors.PermissionDeniedError("not yours", reason="NOT_MISSION_OWNER"),
            grpc.StatusCode.PERMISSION_DENIED,
            "NOT_MISSION_OWNER",
        ),
        (errors.OutOfRangeError("far"), grpc.StatusCode.OUT_OF_RANGE, "OUT_OF_RANGE"),
        (errors.UnavailableError("away"), grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
    ],
)
def test_the_one_translation_of_every_status_kind(exc: errors.ServiceError, code: grpc.StatusCode, reason: str) -> None:
    status = to_status(exc)
    assert (status.code, status.details) == (code, str(exc))
    info = _error_info(status)
    assert (info.reason, info.domain, dict(info.metadata)) == (reason, DOMAIN, dict(exc.metadata))
    violations = [
        (violation.field, violation.description)
        for bad_request in details_of(_rich(status).details, error_details_pb2.BadRequest)
        for violation in bad_request.field_violations
    ]
    expected = [(exc.field, exc.description)] if isinstance(exc, errors.InvalidArgumentError) else []
    assert violations == expected
    batch_result = to_submit_error(exc)
    assert (batch_result.code, batch_result.reason, batch_result.message) == (code.value[0], reason, str(exc))


def test_a_batch_result_for_an_unexpected_error_is_internal_without_its_words() -> None:
    result = to_submit_error(ValueError("hunter2"))
    assert (result.code, result.reason) == (grpc.StatusCode.INTERNAL.value[0], "INTERNAL")
    assert "hunter2" not in result.message


def test_invalid_argument_carries_a_field_violation() -> None:
    status = to_status(errors.InvalidArgumentError("max_attempts", "must be between 0 and 100, got -1"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "max_attempts: must be between 0 and 100, got -1"
    assert _error_info(status).reason == "INVALID_ARGUMENT"
    [bad_request] = details_of(_rich(status).details, error_details_pb2.BadRequest)
    [violation] = bad_request.field_violations
    assert (violation.field, violation.description) == ("max_attempts", "must be between 0 and 100, got -1")


@pytest.mark.parametrize("last_sequence", [0, 17, 2**40])
def test_a_lagging_subscriber_learns_where_to_resume(last_sequence: int) -> None:
    status = to_status(SubscriberLaggingError(last_sequence))
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (LAST_SEQUENCE_KEY, str(last_sequence)) in status.trailing_metadata
    info = _error_info(status)
    assert info.reason == "SUBSCRIBER_TOO_SLOW"
    assert dict(info.metadata) == {"last_sequence": str(last_sequence)}


def test_a_stream_ended_by_a_stopping_service_is_unavailable_and_resumable() -> None:
    status = to_status(ServiceStoppingError(42))
    assert status.code == grpc.StatusCode.UNAVAILABLE
    assert (LAST_SEQUENCE_KEY, "42") in status.trailing_metadata
    info = _error_info(status)
    assert info.reason == "SERVICE_STOPPING"
    assert dict(info.metadata) == {"last_sequence": "42"}
    assert "after_sequence=42" in status.details


def test_only_an_ended_stream_gets_the_position_metadata() -> None:
    status = to_status(errors.NotFoundError("x"))
    assert [key for key, _ in status.trailing_metadata] == [DETAILS_KEY]
    assert dict(_error_info(status).metadata) == {}


@pytest.mark.parametrize(
    "exc",
    [ValueError("password=hunter2 at db.internal"), errors.DecodeError("hunter2"), errors.MissionsError("hunter2")],
)
def test_an_unexpected_error_is_internal_with_an_id_and_no_leak(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="mission_service.status"):
        status = to_status(exc)
    assert status.code == grpc.StatusCode.INTERNAL
    assert "hunter2" not in status.details
    assert "hunter2" not in str(_rich(status))
    match = re.fullmatch(r"internal error \(id ([0-9a-f]{12})\)", status.details)
    assert match is not None
    assert _error_info(status).reason == "INTERNAL"
    # The id leads an operator to the logged traceback.
    [record] = [record for record in caplog.records if match.group(1) in record.getMessage()]
    assert record.exc_info is not None
    assert record.exc_info[1] is exc


def test_every_internal_error_gets_its_own_id() -> None:
    assert to_status(ValueError("a")).details != to_status(ValueError("a")).details


class FakeContext:
    """Records the abort the servicer asks for, and raises like grpc.aio does."""

    def __init__(self) -> None:
        self.aborts: list[tuple[grpc.StatusCode, str, Any]] = []

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        self.aborts.append((code, details, trailing_metadata))
        raise grpc.aio.AbortError()


class Servicer:
    @translate_errors
    async def Unary(self, request: str, context: Any) -> str:
        if request == "missing":
            raise errors.NotFoundError("mission 'missing' not found")
        if request == "abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        if request == "cancel":
            raise asyncio.CancelledError()
        return request.upper()

    @translate_errors
    async def Stream(self, request: int, context: Any) -> AsyncIterator[int]:
        for item in range(request):
            yield item
        raise errors.BrokerUnavailableError("gone")


async def test_translate_errors_passes_results_through() -> None:
    context = FakeContext()
    assert await Servicer().Unary("ok", context) == "OK"
    assert context.aborts == []


async def test_translate_errors_aborts_with_the_mapped_status() -> None:
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await Servicer().Unary("missing", context)
    [(code, details, trailing)] = context.aborts
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "mission 'missing' not found")
    assert trailing == to_status(errors.NotFoundError("mission 'missing' not found")).trailing_metadata


async def test_translate_errors_leaves_a_deliberate_abort_alone() -> None:
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await Servicer().Unary("abort", context)
    assert [code for code, _, _ in context.aborts] == [grpc.StatusCode.PERMISSION_DENIED]


async def test_translate_errors_never_turns_cancellation_into_a_status() -> None:
    context = FakeContext()
    with pytest.raises(asyncio.CancelledError):
        await Servicer().Unary("cancel", context)
    assert context.aborts == []


async def test_translate_errors_on_a_stream_delivers_then_aborts() -> None:
    context = FakeContext()
    received = []
    with pytest.raises(grpc.aio.AbortError):
        async for item in Servicer().Stream(3, context):
            received.append(item)
    assert received == [0, 1, 2]
    assert [code for code, _, _ in context.aborts] == [grpc.StatusCode.UNAVAILABLE]


def test_out_of_range_names_the_oldest_available_sequence() -> None:
    status = to_status(errors.LogTruncatedError(42))
    assert status.code == grpc.StatusCode.OUT_OF_RANGE
    assert "oldest available sequence is 42" in status.details
    assert "after_sequence=41" in status.details
