"""Who makes an HTTP call: the bearer token's principal (with the gRPC port's roles and refusals),
or the signed-in session's (sessions.py, its CSRF token checked on every state-changing request),
else the client certificate's name (mTLS), else the peer address; and its correlation id."""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from mission_service.auth import authorize
from mission_service.http.sessions import CSRF_HEADER, SESSION_COOKIE, Session, Sessions
from mission_service.operations import Call, given_correlation_id
from mission_service.tokens import Principal, Role, TokenFile
from missions.errors import PermissionDeniedError, UnauthenticatedError
from missions.metadata import CORRELATION_KEY

__all__ = ["Access"]

# Methods that change nothing: no CSRF token needed (the API has no state-changing GET).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _is_loopback_host(host: str) -> bool:
    """Whether a Host header (``name[:port]``, ``[v6]:port``) names this machine."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Access:
    """Turns an HTTP request into the ``Call`` of one MissionService method.

    Args:
        tokens: with a tokens file, every call needs ``Authorization: Bearer <token>``.
        client_certificates: the server verifies client certificates (mTLS), so their names identify callers.
        loopback_hosts_only: the port has no authentication: refuse a Host header that does
            not name this machine, so that a web page whose name an attacker points at 127.0.0.1
            (DNS rebinding) cannot use the API as its own origin.
        secure_cookies: the port serves TLS, so the session cookie is marked Secure.

    With tokens, a browser may sign in instead (``sessions``): its session cookie stands for its token.
    """

    def __init__(
        self,
        tokens: TokenFile | None,
        *,
        client_certificates: bool,
        loopback_hosts_only: bool,
        secure_cookies: bool = False,
    ) -> None:
        self.tokens = tokens
        self.sessions = Sessions(secure=secure_cookies) if tokens is not None else None
        self._client_certificates = client_certificates
        self._loopback_hosts_only = loopback_hosts_only

    def call(self, request: web.Request, method: str) -> Call:
        """The Call of ``request`` to ``method`` (``/missions.v1.MissionService/GetMission``), or
        UnauthenticatedError / PermissionDeniedError as the gRPC port would answer."""
        if self._loopback_hosts_only and not _is_loopback_host(request.host):
            raise PermissionDeniedError(
                f"Host {request.host!r} is not this machine's name, and this port has no authentication",
                reason="HOST_NOT_LOOPBACK",
            )
        correlation_id = given_correlation_id(request.headers.getall(CORRELATION_KEY, ()))
        return Call(self._caller(request, method), correlation_id)

    def _caller(self, request: web.Request, method: str) -> Principal:
        if self.tokens is not None:
            principal = authorize(self.tokens, method, self._authorizations(request))
            if principal is not None:
                return principal
        if self._client_certificates:
            certificate = request.transport.get_extra_info("peercert") if request.transport else None
            for entry in (certificate or {}).get("subject", ()):
                for key, value in entry:
                    if key == "commonName":
                        return Principal(value, frozenset(Role))
        return Principal(str(request.remote or "unknown"), frozenset(Role), authenticated=False)

    def session(self, request: web.Request) -> tuple[str, Session] | None:
        """The session id and session of ``request``'s cookie; None without a cookie, and
        UnauthenticatedError (SESSION_UNKNOWN) for one this process does not know (any more)."""
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id is None or self.sessions is None:
            return None
        session = self.sessions.get(session_id)
        if session is None:
            raise UnauthenticatedError(
                "the session has ended (signed out, expired, or the service restarted): sign in again",
                reason="SESSION_UNKNOWN",
            )
        return session_id, session

    def _authorizations(self, request: web.Request) -> list[str]:
        """The Authorization values of ``request``: its own header, else its session's token, once
        a state-changing request has shown the session's CSRF token."""
        given = request.headers.getall("Authorization", [])
        found = None if given else self.session(request)
        if found is None:
            return given
        session = found[1]
        if request.method not in _SAFE_METHODS and not hmac.compare_digest(
            request.headers.get(CSRF_HEADER, "").encode(), session.csrf_token.encode()
        ):
            raise PermissionDeniedError(
                f"a request signed in by cookie must send the session's CSRF token in {CSRF_HEADER}",
                reason="CSRF_TOKEN_INVALID",
            )
        return [f"Bearer {session.token}"]
