"""Domain exceptions shared by the service, the worker and the client.

Every error the service answers a call with is a ``ServiceError``: one subclass per
gRPC status kind, each with the ErrorInfo ``reason`` clients branch on. The service
turns them into a status in one place (mission_service/status.py); any other exception
that reaches a client is INTERNAL.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "AlreadyExistsError",
    "BrokerUnavailableError",
    "DecodeError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "InvalidPayload",
    "LogTruncatedError",
    "MissionsError",
    "NonRetryableError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "ServiceError",
    "ServiceStoppingError",
    "StreamEndedError",
    "SubscriberLaggingError",
    "UnauthenticatedError",
    "UnavailableError",
]


class MissionsError(Exception):
    """Base of every exception this project raises on purpose."""


class ServiceError(MissionsError):
    """An error the service answers a call with; its status kind is its class.

    Args:
        message: the status message, which names the field, limit or mission at fault.
        reason: the ErrorInfo reason, when it is not the class's.
        metadata: the ErrorInfo metadata (e.g. where a stream can resume).

    Attributes:
        reason: a stable UPPER_SNAKE_CASE string clients branch on; it never changes.
        metadata: the ErrorInfo metadata.
    """

    reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.metadata: Mapping[str, str] = dict(metadata or {})


class InvalidArgumentError(ServiceError):
    """A request field is malformed or out of its limits; ``field`` names it (BadRequest)."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class NotFoundError(ServiceError):
    """No mission has the given id."""

    reason = "MISSION_NOT_FOUND"


class AlreadyExistsError(ServiceError):
    """An idempotency key was reused with a different request."""

    reason = "IDEMPOTENCY_KEY_REUSED"


class FailedPreconditionError(ServiceError):
    """The mission is not in a state that allows the operation (by default: it has finished)."""

    reason = "MISSION_FINISHED"


class OutOfRangeError(ServiceError):
    """A position lies outside what can be served."""

    reason = "OUT_OF_RANGE"


class ResourceExhaustedError(ServiceError):
    """The caller holds, or asked for, more than a limit allows."""

    reason = "RESOURCE_EXHAUSTED"


class UnavailableError(ServiceError):
    """Something the call needs is away for now; retrying (elsewhere) can succeed."""

    reason = "UNAVAILABLE"


class UnauthenticatedError(ServiceError):
    """The call carries no credentials, or unknown ones."""

    reason = "UNAUTHENTICATED"


class PermissionDeniedError(ServiceError):
    """The caller is known but may not do this."""

    reason = "PERMISSION_DENIED"


class BrokerUnavailableError(UnavailableError):
    """RabbitMQ could not be reached or did not confirm a publish."""

    reason = "BROKER_UNAVAILABLE"


class LogTruncatedError(OutOfRangeError):
    """A log position is older than the log's retention."""

    reason = "POSITION_BEFORE_RETENTION"

    def __init__(self, oldest_sequence: int) -> None:
        super().__init__(
            f"the position is older than the event log's retention; the oldest available sequence is"
            f" {oldest_sequence} (resume with after_sequence={oldest_sequence - 1} or 0 for the whole log)",
            metadata={"oldest_sequence": str(oldest_sequence)},
        )
        self.oldest_sequence = oldest_sequence


class StreamEndedError(ServiceError):
    """The server ended a stream early; the client resumes after ``last_sequence``."""

    summary = "stream ended"

    def __init__(self, last_sequence: int) -> None:
        super().__init__(
            f"{self.summary}; resume with after_sequence={last_sequence}",
            metadata={"last_sequence": str(last_sequence)},
        )
        self.last_sequence = last_sequence


class SubscriberLaggingError(StreamEndedError, ResourceExhaustedError):
    """The subscriber's buffer overflowed."""

    reason = "SUBSCRIBER_TOO_SLOW"
    summary = "subscriber fell behind"


class ServiceStoppingError(StreamEndedError, UnavailableError):
    """This replica is shutting down; any replica can continue the stream."""

    reason = "SERVICE_STOPPING"
    summary = "service is shutting down"


class DecodeError(MissionsError):
    """A broker message is not a MissionEvent this version understands."""


class NonRetryableError(MissionsError):
    """Raised by a handler to fail the mission at once, without further attempts."""


# No "Error" suffix: the class name is the error type clients see, beside DeadlineExceeded and WorkerLost.
class InvalidPayload(NonRetryableError):
    """A payload does not fit the dataclass its handler declared; retrying cannot change that.

    ``path`` names the field (``payload.sizes[2].width``). Raised from a payload dataclass's
    ``__post_init__``, it names a field of that dataclass (``"seconds"``) and the worker adds
    the rest of the path.
    """

    def __init__(self, path: str, description: str) -> None:
        super().__init__(f"{path}: {description}")
        self.path = path
        self.description = description
