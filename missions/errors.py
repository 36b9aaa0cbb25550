"""Domain exceptions shared by the service, the worker and the client.

The service maps them to gRPC status codes in one table (mission_service/status.py).
"""

from __future__ import annotations

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
]


class MissionsError(Exception):
    """Base of every exception this project raises on purpose."""


class InvalidArgumentError(MissionsError):
    """A request field is malformed or out of its limits."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class NotFoundError(MissionsError):
    """No mission has the given id."""


class AlreadyExistsError(MissionsError):
    """An idempotency key was reused with a different request."""


class FailedPreconditionError(MissionsError):
    """The mission is not in a state that allows the operation; ``reason`` says which."""

    def __init__(self, message: str, reason: str = "MISSION_FINISHED") -> None:
        super().__init__(message)
        self.reason = reason


class BrokerUnavailableError(MissionsError):
    """RabbitMQ could not be reached or did not confirm a publish."""


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


class LogTruncatedError(MissionsError):
    """A log position is older than the log's retention."""

    def __init__(self, oldest_sequence: int) -> None:
        super().__init__(
            f"the position is older than the event log's retention; the oldest available sequence is"
            f" {oldest_sequence} (resume with after_sequence={oldest_sequence - 1} or 0 for the whole log)"
        )
        self.oldest_sequence = oldest_sequence
