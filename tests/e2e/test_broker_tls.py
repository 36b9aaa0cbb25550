"""End to end: mission-service and mission-worker reach the broker over amqps:// (TLS and mTLS).

The local RabbitMQ has no TLS listener, so a TLS-terminating proxy stands in for the
broker's amqps port: the processes' side of the connection is real TLS, verified
against a throwaway CA, with a client certificate where the proxy asks for one.
"""

from __future__ import annotations

import asyncio
import pathlib
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from missions.v1 import events_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.e2e.secure_certs import Authority
from tests.proxy import TcpProxy
from tests.support import Stack, watch_events

pytestmark = pytest.mark.e2e


def _amqps(amqp_url: str, port: int) -> str:
    """``amqp_url`` as amqps:// to localhost:``port`` (the name the proxy's certificate carries)."""
    parts = urlsplit(amqp_url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(scheme="amqps", netloc=f"{credentials}@localhost:{port}"))


def _broker_context(authority: Authority, *, require_client_certificate: bool) -> ssl.SSLContext:
    issued = authority.issue("broker", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    if require_client_certificate:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=authority.cert)
    return context


@pytest.fixture
def authority(tmp_path: pathlib.Path) -> Authority:
    return Authority("broker", tmp_path)


@pytest.fixture
async def tls_broker(amqp_url: str, authority: Authority) -> AsyncIterator[TcpProxy]:
    """The local broker behind a proxy that speaks TLS and requires a client certificate."""
    upstream = urlsplit(amqp_url)
    context = _broker_context(authority, require_client_certificate=True)
    async with TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 5672, tls=context) as proxy:
        yield proxy


async def test_service_and_worker_run_missions_over_amqps_with_a_client_certificate(
    namespace: str, amqp_url: str, tmp_path: pathlib.Path, authority: Authority, tls_broker: TcpProxy
) -> None:
    client = authority.issue("missions", server=False)
    options = ["--amqp-ca", str(authority.cert), "--amqp-cert", str(client.cert), "--amqp-key", str(client.key)]
    async with Stack(namespace, _amqps(amqp_url, tls_broker.port), tmp_path) as stack:
        await stack.start_service(*options)
        stack.start_worker(*options)
        mission = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"), timeout=30)).mission
        request = pb.WatchEventsRequest(mission_ids=[mission.id])
        async with asyncio.timeout(60):
            events = [event.type async for event in watch_events(stack.stub, request)]
        assert events == [events_pb2.EVENT_TYPE_CREATED, events_pb2.EVENT_TYPE_STARTED, events_pb2.EVENT_TYPE_COMPLETED]
        # Every connection of both processes came through the TLS port.
        assert tls_broker.accepted >= 3 and tls_broker.connections >= 3


async def test_a_broker_certificate_from_another_ca_is_refused(
    namespace: str, amqp_url: str, tmp_path: pathlib.Path, tls_broker: TcpProxy
) -> None:
    (tmp_path / "stranger").mkdir()
    stranger = Authority("stranger", tmp_path / "stranger")
    async with Stack(namespace, _amqps(amqp_url, tls_broker.port), tmp_path) as stack:
        worker = stack.start_worker("--amqp-ca", str(stranger.cert))
        assert await asyncio.to_thread(worker.wait, 60) != 0
        output = worker.output()
        assert "CERTIFICATE_VERIFY_FAILED" in output or "certificate verify failed" in output, output
        assert f":{urlsplit(amqp_url).password}@" not in output  # the URL is logged redacted
        assert tls_broker.connections == 0
