from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from tests.e2e.test_broker_faults import FaultStack
from tests.proxy import TcpProxy
from tests.support import Stack


@pytest.fixture
async def stack(namespace: str, amqp_url: str, tmp_path: pathlib.Path) -> AsyncIterator[Stack]:
    """A per-test namespace with helpers to start the real service and workers; all killed afterwards."""
    async with Stack(namespace, amqp_url, tmp_path) as stack:
        yield stack


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    """A loopback TCP proxy to the broker that a test can sever and restore."""
    async with TcpProxy.for_url(amqp_url) as proxy:
        yield proxy


@pytest.fixture
async def proxied(namespace: str, amqp_url: str, proxy: TcpProxy, tmp_path: pathlib.Path) -> AsyncIterator[FaultStack]:
    """A stack whose every broker connection goes through ``proxy``; killed before the proxy stops."""
    async with FaultStack(namespace, proxy.url(amqp_url), tmp_path) as stack:
        yield stack
