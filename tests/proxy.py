"""A loopback TCP proxy in front of RabbitMQ, for tests that cut the broker link on demand.

It runs in the test's event loop: keep that loop free (run blocking calls such as
``Process.stop`` in a thread) or traffic through the proxy stalls with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["TcpProxy"]

_CHUNK = 64 * 1024


class TcpProxy:
    """Forwards 127.0.0.1:<free port> to ``upstream`` until severed.

    ``sever()`` closes every open connection and, until ``restore()``, closes each new
    one as soon as it is accepted (the client sees the broker go away, not a hang).
    Use it as an async context manager; ``port`` is known once entered.
    """

    def __init__(
        self, upstream_host: str = "127.0.0.1", upstream_port: int = 5672, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.tls = tls  # terminate TLS on the listening side (a broker's amqps port, say)
        self.port = 0
        self.accepted = 0  # connections forwarded since start
        self.downstream_bytes = 0  # bytes relayed from the broker to clients since start
        self._server: asyncio.Server | None = None
        self._severed = False
        self._links: set[_Link] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    @classmethod
    def for_url(cls, amqp_url: str) -> TcpProxy:
        """A proxy to the broker of ``amqp_url``."""
        parts = urlsplit(amqp_url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5672)

    def url(self, amqp_url: str) -> str:
        """``amqp_url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(amqp_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        return len(self._links)

    @property
    def severed(self) -> bool:
        return self._severed

    def sever(self) -> None:
        """Close every open connection and refuse new ones until ``restore``."""
        self._severed = True
        for link in list(self._links):
            link.close()

    def restore(self) -> None:
        """Accept and forward connections again (clients reconnect by themselves)."""
        self._severed = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.tls)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._severed:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        if self._severed:  # severed while connecting upstream
            client_writer.transport.abort()
            upstream_writer.transport.abort()
            return
        self.accepted += 1
        link = _Link(client_writer, upstream_writer, self._links, self._count_downstream)
        for pump in link.start(client_reader, upstream_reader):
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    def _count_downstream(self, size: int) -> None:
        self.downstream_bytes += size


class _Link:
    """One proxied connection: a pump each way; when either side ends, both close."""

    def __init__(
        self,
        client: asyncio.StreamWriter,
        upstream: asyncio.StreamWriter,
        links: set[_Link],
        count_downstream: Callable[[int], None],
    ) -> None:
        self._writers = (client, upstream)
        self._count_downstream = count_downstream
        self._links = links
        self._pumps: list[asyncio.Task[None]] = []
        links.add(self)

    def start(
        self, client_reader: asyncio.StreamReader, upstream_reader: asyncio.StreamReader
    ) -> list[asyncio.Task[None]]:
        client, upstream = self._writers
        self._pumps = [
            asyncio.create_task(self._pump(client_reader, upstream, lambda _: None)),
            asyncio.create_task(self._pump(upstream_reader, client, self._count_downstream)),
        ]
        for pump in self._pumps:
            pump.add_done_callback(lambda _: self.close())
        return self._pumps

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Callable[[int], None]) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(_CHUNK):
                count(len(data))
                writer.write(data)
                await writer.drain()

    def close(self) -> None:
        """Reset both sides at once (abort drops buffered bytes), like a broken link."""
        self._links.discard(self)
        for writer in self._writers:
            writer.transport.abort()
        for pump in self._pumps:
            pump.cancel()
