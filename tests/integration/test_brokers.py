"""Integration: several broker URLs, the nodes of one cluster, played by TCP proxies to the real
broker that the tests sever (a node lost) and restore (a node back)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from missions import amqp
from missions.brokers import FailoverConnection
from tests.proxy import TcpProxy
from tests.support import free_port

pytestmark = pytest.mark.integration

# Reconnect attempts a second apart (aio-pika's default is 5 s), set by the first URL's query.
_FAST = "?reconnect_interval=1"
_TIMEOUT = 30


@contextlib.asynccontextmanager
async def _nodes(amqp_url: str) -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    async with TcpProxy.for_url(amqp_url) as first, TcpProxy.for_url(amqp_url) as second:
        yield first, second


def _port(connection: AbstractRobustConnection) -> int | None:
    assert isinstance(connection, FailoverConnection)
    return connection.url.port


async def _reconnected(connection: AbstractRobustConnection) -> None:
    """Wait for the connection to be lost, then back."""
    lost = asyncio.Event()
    connection.close_callbacks.add(lambda *_: lost.set())
    back = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: back.set())
    async with asyncio.timeout(_TIMEOUT):
        await lost.wait()
        await back.wait()


async def test_start_up_tries_each_node_until_one_answers(amqp_url: str) -> None:
    async with TcpProxy.for_url(amqp_url) as node:
        nobody = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
        connection = await amqp.connect(f"{nobody}, {node.url(amqp_url)}", "test start-up")
        async with connection:
            assert _port(connection) == node.port
            assert node.accepted == 1


async def test_a_connection_moves_on_to_the_next_node_with_its_channels_and_consumers(amqp_url: str) -> None:
    async with _nodes(amqp_url) as (first, second):
        urls = f"{first.url(amqp_url)}{_FAST},{second.url(amqp_url)}"
        connection = await amqp.connect(urls, "test failover")
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"test-failover-{uuid.uuid4().hex[:8]}", auto_delete=True)
            received: asyncio.Queue[bytes] = asyncio.Queue()

            async def take(message: AbstractIncomingMessage) -> None:
                await message.ack()
                await received.put(message.body)

            await queue.consume(take)
            reconnected = asyncio.create_task(_reconnected(connection))
            first.sever()  # the node is gone, and stays gone
            await reconnected
            assert _port(connection) == second.port
            # The robust channel, its queue and its consumer were restored on the other node.
            await channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key=queue.name)
            async with asyncio.timeout(_TIMEOUT):
                assert await received.get() == b"after"


async def test_with_every_node_lost_it_tries_each_in_turn_until_one_is_back(amqp_url: str) -> None:
    async with _nodes(amqp_url) as (first, second):
        urls = f"{first.url(amqp_url)}{_FAST},{second.url(amqp_url)}"
        connection = await amqp.connect(urls, "test every node lost")
        async with connection:
            reconnected = asyncio.create_task(_reconnected(connection))
            second.sever()
            first.sever()
            # The first attempt goes to the second node, which refuses; the first comes back.
            first.restore()
            await reconnected
            assert _port(connection) == first.port
