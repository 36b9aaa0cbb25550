"""``/api/v1/session``: who is calling (GET), browser sign-in with a token (POST), sign-out (DELETE).

What a session is, and its CSRF token: sessions.py. GET answers with the caller's principal and
roles (the dashboard shows or hides actions by them) and, for a signed-in browser, the session's
CSRF token, which the page echoes in ``X-CSRF-Token``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from mission_service.http.access import Access
from mission_service.http.proto_json import REQUEST
from mission_service.http.sessions import SESSION_COOKIE, Session, Sessions
from mission_service.tokens import Principal
from missions.errors import FailedPreconditionError, InvalidArgumentError, UnauthenticatedError

__all__ = ["SESSION_PATH", "add_sign_in"]

SESSION_PATH = "/api/v1/session"
# Any valid token may ask who it is: a method every role may call.
_READ_METHOD = "/missions.v1.MissionService/GetMission"
_MAX_TOKEN = 4096


def _who(caller: Principal, access: Access, session: Session | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "principal": caller.name,
        "roles": sorted(caller.roles),
        "authenticated": caller.authenticated,
        "sign_in": access.sessions is not None,
    }
    if session is not None:
        body["csrf_token"] = session.csrf_token
    return body


async def _token(request: web.Request) -> str:
    """The token of a sign-in body ``{"token": "..."}`` (JSON only, as every POST of the API)."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="the body must be JSON, sent as Content-Type: application/json")
    try:
        body = json.loads(await request.read())
    except ValueError as exc:
        raise InvalidArgumentError(REQUEST, f"the body is not JSON: {exc}") from None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise InvalidArgumentError("token", "expected the bearer token, a non-empty string")
    return token.strip()


def add_sign_in(app: web.Application, access: Access) -> None:
    async def who(request: web.Request) -> web.Response:
        found = None if "Authorization" in request.headers else access.session(request)
        caller = access.call(request, _READ_METHOD).caller
        return web.json_response(_who(caller, access, found[1] if found else None))

    async def sign_in(request: web.Request) -> web.Response:
        token = await _token(request)
        if access.sessions is None or access.tokens is None:
            raise FailedPreconditionError("this service has no tokens file: every caller is let in without signing in")
        caller = access.tokens.lookup(token) if len(token) <= _MAX_TOKEN else None
        if caller is None:
            raise UnauthenticatedError("unknown bearer token", reason="TOKEN_UNKNOWN")
        with_old = request.cookies.get(SESSION_COOKIE)
        if with_old is not None:
            access.sessions.end(with_old)
        session_id, session = access.sessions.start(token)
        response = web.json_response(_who(caller, access, session))
        access.sessions.set_cookie(response, session_id)
        return response

    async def sign_out(request: web.Request) -> web.Response:
        try:
            found = access.session(request)
        except UnauthenticatedError:  # already ended: only the cookie is left to clear
            found = None
        if found is not None and access.sessions is not None:
            access.call(request, _READ_METHOD)  # the CSRF token, as on every state-changing request
            access.sessions.end(found[0])
        response = web.json_response({})
        Sessions.clear_cookie(response)
        return response

    app.router.add_get(SESSION_PATH, who)
    app.router.add_post(SESSION_PATH, sign_in)
    app.router.add_delete(SESSION_PATH, sign_out)
