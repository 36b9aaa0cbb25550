"""The Prometheus metrics endpoint: ``serving`` a process's registry over HTTP on --metrics-listen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, start_http_server

from missions.startup import ListenError

__all__ = ["serving", "split_listen"]

log = logging.getLogger(__name__)


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as (host, port); raises ValueError."""
    host, colon, port = listen.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@contextlib.asynccontextmanager
async def serving(listen: str, registry: CollectorRegistry) -> AsyncIterator[int]:
    """Serve ``registry`` at ``http://listen/metrics`` (any path, in fact) until exit; yields the port.

    prometheus_client's own HTTP server, in a daemon thread: scrapes never wait for the
    event loop, and reading a metric is thread-safe.
    """
    host, port = split_listen(listen)
    try:
        server, thread = start_http_server(port, host, registry=registry)
    except OSError as exc:  # a one-line start-up error, as for a gRPC port
        raise ListenError(listen, f"{(exc.strerror or str(exc)).lower()} (--metrics-listen)") from exc
    try:
        log.info("metrics on http://%s:%d/metrics", host, server.server_port)
        yield server.server_port
    finally:
        await asyncio.to_thread(server.shutdown)  # waits for the serving loop's next poll
        server.server_close()
        thread.join()
