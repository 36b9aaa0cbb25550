"""Fixtures of the integration tests: a connection to the real broker and a publisher on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractRobustConnection

from missions import amqp
from missions.amqp import LogRetention
from missions.eventlog import EventPublisher
from missions.topology import Topology


@pytest.fixture
async def connection(amqp_url: str, request: pytest.FixtureRequest) -> AsyncIterator[AbstractRobustConnection]:
    connection = await amqp.connect(amqp_url, f"test {request.node.name}")
    async with connection:
        yield connection


@pytest.fixture
async def publisher(connection: AbstractRobustConnection, namespace: str) -> AsyncIterator[EventPublisher]:
    """The namespace's topology declared, and an EventPublisher on it that publishes as the service does."""
    publisher = await EventPublisher.open(connection, Topology(namespace), LogRetention(), decides=True)
    yield publisher
    await publisher.close()
