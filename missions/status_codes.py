"""The gRPC status code of each status kind of missions/errors.py: one table, which the
service reads to answer (mission_service/status.py) and the client inverts to raise
(missions/client/_errors.py). No error is an instance of two of its kinds."""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from missions import errors

__all__ = ["STATUS_CODES"]

STATUS_CODES: Mapping[type[errors.ServiceError], grpc.StatusCode] = {
    errors.InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OutOfRangeError: grpc.StatusCode.OUT_OF_RANGE,
    errors.ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.UnavailableError: grpc.StatusCode.UNAVAILABLE,
    errors.UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
}
