"""Browser sign-in: a session cookie standing for a bearer token, and the CSRF token of the session.

``POST /api/v1/session`` with ``{"token": ...}`` checks the token against the tokens file and
sets ``missions_session``, a random id (HttpOnly, SameSite=Strict, Secure under TLS) that this
process maps to the token. Every later call with the cookie is authorized as that token would
be, against the tokens file as it is then: a token removed from the file ends its sessions, a
role change applies at once. ``DELETE`` signs out. Sessions live in this process's memory, so a
restart ends them, and behind a load balancer each replica has its own (docs/dashboard.md).

A state-changing request authorized by the cookie must also carry the session's CSRF token in
``X-CSRF-Token`` (checked in access.py): a cross-site page sends the cookie but cannot read the
token, which only same-origin script gets (in this module's responses, never in a cookie).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "Session", "Sessions"]

SESSION_COOKIE = "missions_session"
CSRF_HEADER = "X-CSRF-Token"
_LIFETIME_S = 12 * 3600
_MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf_token: str
    expires: float


class Sessions:
    """The signed-in browsers of this process: session id → Session, each for ``lifetime`` seconds.

    At most ``limit`` at once; one more ends the oldest (sign-ins are not free to repeat without
    a valid token, so this bounds memory, not abuse by strangers).
    """

    def __init__(
        self,
        *,
        secure: bool,
        lifetime: float = _LIFETIME_S,
        limit: int = _MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secure = secure
        self._lifetime = lifetime
        self._limit = limit
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def start(self, token: str) -> tuple[str, Session]:
        while len(self._sessions) >= self._limit:
            del self._sessions[next(iter(self._sessions))]
        session_id = secrets.token_urlsafe(32)
        session = Session(token, secrets.token_urlsafe(32), self._clock() + self._lifetime)
        self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None and session.expires <= self._clock():
            del self._sessions[session_id]
            return None
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def set_cookie(self, response: web.StreamResponse, session_id: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=int(self._lifetime),
            path="/",
            httponly=True,
            secure=self.secure,
            samesite="Strict",
        )

    @staticmethod
    def clear_cookie(response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/")
