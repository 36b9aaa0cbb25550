"""gRPC status -> the exceptions of missions/errors.py: the inverse of mission_service/status.py.

The class is chosen by the ErrorInfo reason first, then by the status code; an unknown
reason gets its code's class with the reason kept. An INVALID_ARGUMENT carries the field
its BadRequest names, a cut stream the sequence to resume after.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2, status_pb2

from missions import errors
from missions.metadata import LAST_SEQUENCE_KEY
from missions.status_codes import STATUS_CODES
from missions.v1 import mission_pb2
from missions.v1 import mission_service_pb2 as pb

__all__ = [
    "DeadlineExceededError",
    "MissionCancelled",
    "MissionFailed",
    "from_rpc_error",
    "from_submit_error",
    "status_code",
]

_DETAILS_KEY = "grpc-status-details-bin"
# The attribute that keeps the status code on an error this module built (missions/errors.py knows no gRPC).
_CODE_ATTRIBUTE = "grpc_status_code"


class DeadlineExceededError(errors.ServiceError, TimeoutError):
    """The call's deadline (the client's ``timeout``) passed before the service answered."""

    reason = "DEADLINE_EXCEEDED"


class MissionFailed(errors.MissionsError):
    """The mission ended FAILED; ``error`` is its last error (type, message, retryable)."""

    def __init__(self, mission: mission_pb2.Mission) -> None:
        super().__init__(f"mission {mission.id} failed: {mission.error.type}: {mission.error.message}")
        self.mission = mission
        self.error = mission.error


class MissionCancelled(errors.MissionsError):
    """The mission ended CANCELLED."""

    def __init__(self, mission: mission_pb2.Mission) -> None:
        super().__init__(f"mission {mission.id} was cancelled")
        self.mission = mission


_BY_CODE: dict[grpc.StatusCode, type[errors.ServiceError]] = {
    **{code: kind for kind, code in STATUS_CODES.items()},
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}
_NARROWER: tuple[type[errors.ServiceError], ...] = (
    errors.BrokerUnavailableError,
    errors.LogTruncatedError,
    errors.SubscriberLaggingError,
    errors.ServiceStoppingError,
)
_BY_REASON = {kind.reason: kind for kind in (*_BY_CODE.values(), *_NARROWER)}
_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def _error(
    code: grpc.StatusCode, message: str, reason: str, field: str, metadata: Mapping[str, str]
) -> errors.ServiceError:
    kind = _BY_REASON.get(reason) or _BY_CODE.get(code, errors.ServiceError)
    error: errors.ServiceError
    if issubclass(kind, errors.InvalidArgumentError):
        error = kind(field, message.removeprefix(f"{field}: ") if field else message)
    elif issubclass(kind, errors.LogTruncatedError):
        error = kind(int(metadata.get("oldest_sequence", 0)))
    elif issubclass(kind, errors.StreamEndedError):
        error = kind(int(metadata.get("last_sequence", 0)))
    else:
        error = kind(message)
    # The service's own words, reason and metadata, whatever the constructor made of them.
    error.args = (message,)
    if reason or kind is errors.ServiceError:
        error.reason = reason or code.name
    error.metadata = dict(metadata)
    setattr(error, _CODE_ATTRIBUTE, code)
    return error


def status_code(error: errors.ServiceError) -> grpc.StatusCode:
    """The gRPC status code the service answered with (e.g. for an exit code); UNKNOWN for an
    error the client did not build from a status."""
    code = getattr(error, _CODE_ATTRIBUTE, None)
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def from_rpc_error(exc: grpc.RpcError) -> errors.ServiceError:
    """The exception for a failed call (raise it ``from exc``)."""
    if not isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return _error(grpc.StatusCode.UNKNOWN, str(exc), "UNKNOWN", "", {})
    trailers = tuple(exc.trailing_metadata() or ())
    reason, field, metadata = "", "", dict[str, str]()
    for key, value in trailers:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            reason, field, metadata = _details(status_pb2.Status.FromString(value))
    for key, value in trailers:
        if key == LAST_SEQUENCE_KEY and str(value).isdigit():
            metadata.setdefault("last_sequence", str(value))
    return _error(exc.code(), exc.details() or "", reason, field, metadata)


def _details(status: status_pb2.Status) -> tuple[str, str, dict[str, str]]:
    """The ErrorInfo reason and metadata and the first BadRequest field of ``status``."""
    reason, field, metadata = "", "", dict[str, str]()
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(bad) and bad.field_violations:
            field = bad.field_violations[0].field
    return reason, field, metadata


def from_submit_error(error: pb.SubmitMissionError) -> errors.ServiceError:
    """The exception SubmitMission would have raised for one rejected mission of a batch."""
    code = _CODES_BY_VALUE.get(error.code, grpc.StatusCode.UNKNOWN)
    return _error(code, error.message, error.reason, error.field, {})
