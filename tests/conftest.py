"""Fixtures shared by the integration and end-to-end tests: the real broker, per-test namespaces."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from missions.amqp import delete_topology
from missions.topology import Topology

AMQP_URL = os.environ.get("MISSIONS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

# Every mission type the tests submit: their work queues are deleted with the namespace.
TEST_MISSION_TYPES = (
    "noop",
    "echo",
    "sleep",
    "fail",
    "crash",
    "stubborn",
    "resize",
    "report",
    "nobody-handles-this",
    "resize-image",
)


@pytest.fixture
def amqp_url() -> str:
    return AMQP_URL


@pytest.fixture
async def namespace(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A namespace of its own for one test; its exchange and queues are deleted afterwards.

    Delay queues (ns.backoff.<ms>) expire by themselves (x-expires); a test that submits a
    mission type outside TEST_MISSION_TYPES deletes that type's work queue itself.
    """
    name = f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
    yield name
    connection = await aio_pika.connect(AMQP_URL, client_properties={"connection_name": f"cleanup {name}"})
    async with connection:
        await delete_topology(connection, Topology(name), TEST_MISSION_TYPES)
