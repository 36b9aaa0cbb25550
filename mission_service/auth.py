"""Who may call what: bearer-token authentication and role checks, as one server interceptor.

Every RPC passes the interceptor (WatchEvents and reflection too) except the health
service, which orchestrators probe without credentials. The authenticated principal is
handed to the servicer through a context variable: grpc.aio runs the interceptors and
the handler of one RPC in one ``contextvars.Context``.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import grpc

from mission_service.status import abort
from mission_service.tokens import Principal, Role, TokenFile
from missions.errors import PermissionDeniedError, ServiceError, UnauthenticatedError
from missions.v1 import mission_service_pb2

__all__ = ["AuthInterceptor", "allowed_roles", "authorize", "caller"]

log = logging.getLogger(__name__)

_SERVICE = mission_service_pb2.DESCRIPTOR.services_by_name["MissionService"].full_name
_PUBLIC_SERVICES = ("grpc.health.v1.Health",)
_REFLECTION_PREFIX = "/grpc.reflection."
_MAX_TOKEN = 4096

_READ = frozenset(Role)
_WRITE = frozenset({Role.SUBMITTER, Role.ADMIN})
_ADMIN = frozenset({Role.ADMIN})
_OPERATIONS = frozenset({Role.READER, Role.ADMIN})

# The roles that may call each method; CancelMission and Pause/Resume/DeleteSchedule check
# ownership after this.
_POLICY: dict[str, frozenset[Role]] = {
    **{name: _READ for name in ("GetMission", "ListMissions", "WatchEvents", "GetSchedule", "ListSchedules")},
    **{name: _OPERATIONS for name in ("ListWorkers", "GetStats", "ListDeadLetters")},
    **{name: _WRITE for name in ("SubmitMission", "SubmitMissions", "CancelMission")},
    **{name: _WRITE for name in ("CreateSchedule", "PauseSchedule", "ResumeSchedule", "DeleteSchedule")},
    **{name: _ADMIN for name in ("RedriveMission", "RedriveDeadLetters", "PurgeDeadLetters")},
}

_CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("missions_caller", default=None)


def allowed_roles(method: str) -> frozenset[Role] | None:
    """The roles that may call ``/package.Service/Method``; None when it needs no token.

    Reflection needs a token of any role; a method this table does not know needs admin.
    """
    service, _, name = method.lstrip("/").partition("/")
    if service in _PUBLIC_SERVICES:
        return None
    if method.startswith(_REFLECTION_PREFIX):
        return _READ
    if service == _SERVICE and name in _POLICY:
        return _POLICY[name]
    return _ADMIN


def caller(context: grpc.aio.ServicerContext, *, client_certificates: bool = False) -> Principal:
    """Who makes the current RPC, with every role unless a token says otherwise.

    The token's principal when tokens are on; else, with ``client_certificates`` (mTLS,
    where the server verified the certificate), its common name; else the peer address.
    """
    principal = _CALLER.get()
    if principal is not None:
        return principal
    names = context.auth_context().get("x509_common_name") if client_certificates else None
    if names:
        return Principal(names[0].decode(errors="replace"), frozenset(Role))
    return Principal(str(context.peer() or "unknown"), frozenset(Role), authenticated=False)


def _refusal(handler: grpc.RpcMethodHandler | None, error: ServiceError) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that only refuses the call with ``error``."""

    async def deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort(context, error)

    shape = (handler.request_streaming, handler.response_streaming) if handler is not None else (False, False)
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[shape]
    return cast(grpc.RpcMethodHandler, factory(deny))


def _bearer(values: Sequence[str | bytes]) -> str:
    """The token of the one ``authorization: Bearer <token>`` value; ValueError says what is wrong."""
    if not values:
        raise ValueError("missing 'authorization: Bearer <token>'")
    if len(values) > 1:
        raise ValueError("more than one authorization entry")
    value = values[0] if isinstance(values[0], str) else ""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
        raise ValueError(f"the authorization must be 'Bearer <token>' (a token of 1 to {_MAX_TOKEN} characters)")
    return token


def authorize(tokens: TokenFile, method: str, authorizations: Sequence[str | bytes]) -> Principal | None:
    """The principal whose bearer token ``authorizations`` holds (the values of the call's
    ``authorization`` metadata or header) if it may call ``method``; None when ``method`` needs no token.

    Raises UnauthenticatedError (TOKEN_MISSING, TOKEN_UNKNOWN) or PermissionDeniedError
    (ROLE_REQUIRED), and logs the refusal: the gRPC interceptor and the HTTP API both ask here.
    """
    roles = allowed_roles(method)
    if roles is None:
        return None
    try:
        token = _bearer(authorizations)
    except ValueError as exc:
        log.info("refused %s: %s", method, exc)
        raise UnauthenticatedError(str(exc), reason="TOKEN_MISSING") from None
    principal = tokens.lookup(token)
    if principal is None:
        log.info("refused %s: unknown token", method)
        raise UnauthenticatedError("unknown bearer token", reason="TOKEN_UNKNOWN")
    if not principal.roles & roles:
        have = ", ".join(sorted(principal.roles))
        need = ", ".join(sorted(roles))
        message = f"principal {principal.name!r} (roles: {have}) may not call {method}; it needs one of: {need}"
        log.info("refused: %s", message)
        raise PermissionDeniedError(message, reason="ROLE_REQUIRED")
    return principal


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """UNAUTHENTICATED without a known token, PERMISSION_DENIED without a role the method allows."""

    def __init__(self, tokens: TokenFile) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        metadata = handler_call_details.invocation_metadata or ()
        try:
            principal = authorize(
                self._tokens, handler_call_details.method, [value for key, value in metadata if key == "authorization"]
            )
        except ServiceError as exc:
            return _refusal(handler, exc)
        if principal is not None:
            _CALLER.set(principal)
        return handler
