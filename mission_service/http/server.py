"""The HTTP server of the JSON API: aiohttp's AppRunner on the service's own event loop.

aiohttp because it is asyncio-native and small: its AppRunner and TCPSite run in the loop the
gRPC server, the follower and the hub already share, so a handler calls MissionOperations
directly (no thread, no second loop), an SSE stream is an ordinary coroutine reading the hub,
and the start and stop fit the service's exit stack. It takes an ssl.SSLContext for TLS and
mTLS, cancels a handler whose client has gone (a watch then frees its stream at once), and has
the middleware and cookie support that browser sign-in will want.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from mission_service.grpc_server import posture
from mission_service.http.access import Access
from mission_service.http.routes import API_PREFIX, build_app
from mission_service.operations import MissionOperations
from mission_service.settings import ServiceSettings, is_loopback
from mission_service.tokens import TokenFile
from missions.metrics_http import split_listen
from missions.startup import ListenError

__all__ = ["serving_http"]

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serving_http(
    settings: ServiceSettings, operations: MissionOperations, tokens: TokenFile | None
) -> AsyncIterator[int]:
    """The JSON API on ``settings.http_listen`` until exit; yields its port.

    On exit it stops accepting, then gives the calls in flight ``shutdown_grace`` to finish.
    """
    access = Access(
        tokens,
        client_certificates=settings.client_certificates,
        loopback_hosts_only=not settings.authenticated and is_loopback(settings.http_listen),
        secure_cookies=settings.tls is not None,
    )
    app = build_app(operations, access, max_body_bytes=settings.limits.max_request_bytes)
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=settings.shutdown_grace.total_seconds(),
    )
    await runner.setup()
    try:
        host, port = split_listen(settings.http_listen)
        context = settings.tls.server_context() if settings.tls is not None else None
        site = web.TCPSite(runner, host or None, port, ssl_context=context, reuse_port=False)
        try:
            await site.start()
        except OSError as exc:  # a one-line start-up error, as for the gRPC port
            raise ListenError(settings.http_listen, f"{(exc.strerror or str(exc)).lower()} (--http-listen)") from exc
        bound = int(runner.addresses[0][1])
        scheme = "http" if context is None else "https"
        root = f"{scheme}://{settings.http_listen.rpartition(':')[0]}:{bound}"
        how = posture(settings, settings.http_listen)
        log.info("dashboard on %s/, HTTP API on %s%s/ (%s)", root, root, API_PREFIX, how)
        yield bound
    finally:
        await runner.cleanup()
