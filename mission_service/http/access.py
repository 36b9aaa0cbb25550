"""Who makes an HTTP call: the bearer token's principal (with the gRPC port's roles and refusals),
else the client certificate's name (mTLS), else the peer address; and its correlation id."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from mission_service.auth import authorize
from mission_service.operations import Call, given_correlation_id
from mission_service.tokens import Principal, Role, TokenFile
from missions.errors import PermissionDeniedError
from missions.metadata import CORRELATION_KEY

__all__ = ["Access"]


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
    """

    def __init__(self, tokens: TokenFile | None, *, client_certificates: bool, loopback_hosts_only: bool) -> None:
        self._tokens = tokens
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
        if self._tokens is not None:
            principal = authorize(self._tokens, method, request.headers.getall("Authorization", ()))
            if principal is not None:
                return principal
        if self._client_certificates:
            certificate = request.transport.get_extra_info("peercert") if request.transport else None
            for entry in (certificate or {}).get("subject", ()):
                for key, value in entry:
                    if key == "commonName":
                        return Principal(value, frozenset(Role))
        return Principal(str(request.remote or "unknown"), frozenset(Role), authenticated=False)
