"""Several broker addresses, the nodes of one RabbitMQ cluster: ``MISSIONS_AMQP_URL`` may list
them separated by commas, and a connection moves on to the next node when it loses one.

aio-pika's robust connection reconnects to the one URL it was made with; a node that is
gone for good would hold it there. ``FailoverConnection`` is that robust connection (its
channels, consumers and declarations restored the same way after each reconnect) with a
list of URLs: the first reconnect attempt after a loss goes to the next node, and while
none answers, each reconnect interval moves on again. Connection options (the URL query:
``heartbeat``, ``reconnect_interval``...) are those of the first URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from yarl import URL

__all__ = ["FailoverConnection", "broker_urls", "redact_url"]


def broker_urls(url: str) -> list[str]:
    """The broker URLs of ``url``: one, or several separated by commas; ValueError for none."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError(f"no broker URL in {url!r}")
    return urls


def redact_url(url: str) -> str:
    """``url`` (or each URL of a list) with its password replaced, for logs."""
    return ",".join(_redacted(one) for one in url.split(","))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over the nodes in ``urls`` (set after construction; the URL it
    connects to first is ``urls[0]``): each reconnect attempt goes to the next node.

    aio-pika's reconnect loop clears ``transport`` before each attempt (it is also cleared
    once when the connection is made, and on close); that is where the URL moves on, so a
    lost node is left at once and every node is tried in turn while none answers.
    """

    _transport: Any = None
    _cleared = 0  # times ``transport`` was set to None: construction, then each attempt

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        super().__init__(url, loop=loop, **kwargs)
        self.urls: Sequence[URL] = (self.url,)

    @property
    def transport(self) -> Any:
        return self._transport

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None:
            self._cleared += 1
            if self._cleared > 2:  # an attempt after the first: the node before was lost
                position = self.urls.index(self.url) if self.url in self.urls else -1
                self.url = self.urls[(position + 1) % len(self.urls)]
        self._transport = value
