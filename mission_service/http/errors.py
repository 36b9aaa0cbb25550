"""Errors as HTTP answers: the gRPC port's status, in the AIP-193 JSON shape.

A domain error goes through mission_service/status.py as on the gRPC port, so its reason,
field and metadata are the same; its gRPC code picks the HTTP status by google.rpc's mapping
(google/rpc/code.proto). The body::

    {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "...",
               "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", ...},
                           {"@type": "type.googleapis.com/google.rpc.BadRequest", ...}]}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc
from aiohttp import web

from mission_service.http.proto_json import to_json
from mission_service.status import classify, error_details
from missions import errors

__all__ = ["HTTP_STATUS", "error_body", "error_response", "http_error_response"]

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

# What aiohttp itself answers (no route, a method the route lacks, a body too large), as the
# nearest gRPC code: the body's "status" for clients that branch on it.
_ROUTING_CODES: Mapping[int, grpc.StatusCode] = {
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _body(http_status: int, code: grpc.StatusCode, error: errors.ServiceError) -> dict[str, Any]:
    return {
        "error": {
            "code": http_status,
            "status": code.name,
            "message": str(error),
            "details": [to_json(detail) for detail in error_details(error)],
        }
    }


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP status and AIP-193 body for ``exc`` (an unexpected one: 500, with a logged id)."""
    code, error = classify(exc)
    http_status = HTTP_STATUS[code]
    return http_status, _body(http_status, code, error)


def _json_response(http_status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=http_status, text=json.dumps(body), content_type="application/json", headers=headers)


def error_response(exc: BaseException) -> web.Response:
    return _json_response(*error_body(exc))


def http_error_response(exc: web.HTTPException, message: str) -> web.Response:
    """aiohttp's own refusal as an AIP-193 body, its reason the HTTP reason phrase (METHOD_NOT_ALLOWED)."""
    code = _ROUTING_CODES.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT)
    error = errors.ServiceError(message, reason=exc.reason.upper().replace(" ", "_"))
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return _json_response(exc.status, _body(exc.status, code, error), headers)
