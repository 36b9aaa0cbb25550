"""scripts/up and scripts/test on a machine where nothing listens at their broker's URL:
scripts/broker starts a local rabbitmq-server, else a RabbitMQ container, and says which;
else one line says how to get one. Each path this machine can run, on a free port of its
own (the shared broker on 5672 is never touched)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import pwd
import random
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest

from tests.support import free_port, rabbitmqctl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = pathlib.Path(__file__).resolve().parents[2]
# scripts/up and scripts/test install first (seconds, more on a busy machine).
_SCRIPT_S = 240


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _node_port() -> int:
    """A free port whose node distribution port (port + 20000, RabbitMQ's rule) is free too."""
    while True:
        port = random.randrange(20000, 45000)
        if _free(port) and _free(port + 20000):
            return port


def _run(argv: list[str], port: int, way: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MISSIONS_START_BROKER": way, **env}
    url = f"amqp://guest:guest@127.0.0.1:{port}/"
    environment |= {"MISSIONS_AMQP_URL": url, "MISSIONS_TEST_AMQP_URL": url}
    return subprocess.run(
        argv, env=environment, cwd=ROOT, capture_output=True, text=True, timeout=_SCRIPT_S, check=False
    )


def _broker_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("scripts/broker:")]


async def _serves_amqp(port: int) -> None:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{port}/")
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(exclusive=True)


@pytest.fixture
async def local_node() -> AsyncIterator[int]:
    """A free port for a local rabbitmq-server node of scripts/broker's; that node stopped afterwards."""
    if shutil.which("rabbitmq-server") is None or os.geteuid() != 0:
        pytest.skip("needs rabbitmq-server, and root to start it (Debian's wrapper runs it as rabbitmq)")
    port = _node_port()
    yield port
    if not _free(port):
        await rabbitmqctl("-n", f"missions-{port}@localhost", "stop")
    # Where scripts/broker put the node's files: the checkout, or the rabbitmq user's home (root).
    shutil.rmtree(ROOT / ".state" / f"rabbitmq-{port}", ignore_errors=True)
    with contextlib.suppress(KeyError):
        shutil.rmtree(pathlib.Path(pwd.getpwnam("rabbitmq").pw_dir) / f"missions-{port}", ignore_errors=True)


def _succeeds(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0


def _broker_image() -> str | None:
    """A RabbitMQ image the engine has, or None (no registry is assumed)."""
    given = os.environ.get("MISSIONS_BROKER_IMAGE")
    for image in (given, "rabbitmq:3.13-management", "missions-local/rabbitmq:3-management"):
        if (
            image
            and subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode == 0
        ):
            return image
    return None


@pytest.fixture
def container_port() -> Iterator[tuple[int, str]]:
    """A free port and a RabbitMQ image; scripts/broker's container for that port removed afterwards."""
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode
    ):
        pytest.skip("needs a running Docker engine")
    image = _broker_image()
    if image is None:
        pytest.skip("needs a RabbitMQ image (MISSIONS_BROKER_IMAGE; scripts/build-images makes one)")
    port = free_port()
    yield port, image
    subprocess.run(["docker", "rm", "-f", "-v", f"missions-rabbitmq-{port}"], capture_output=True, check=False)


async def test_scripts_test_starts_the_local_rabbitmq_server(local_node: int) -> None:
    port = local_node
    result = await asyncio.to_thread(
        _run, [str(ROOT / "scripts" / "test"), "-q", "--collect-only", "tests/unit/test_gen_docs.py"], port, "auto"
    )
    assert result.returncode == 0, result.stderr
    assert _broker_lines(result) == [
        f"scripts/broker: nothing listened on 127.0.0.1:{port}: started the local rabbitmq-server there"
        f" (`rabbitmqctl -n missions-{port}@localhost stop` stops it)"
    ], result.stderr
    await _serves_amqp(port)


async def test_a_rabbitmq_container_is_started_then_reused(container_port: tuple[int, str]) -> None:
    port, image = container_port
    name = f"missions-rabbitmq-{port}"
    broker = [str(ROOT / "scripts" / "broker"), f"amqp://guest:guest@127.0.0.1:{port}/"]

    first = await asyncio.to_thread(_run, broker, port, "docker", MISSIONS_BROKER_IMAGE=image)
    assert first.returncode == 0, first.stderr
    assert _broker_lines(first) == [
        f"scripts/broker: nothing listened on 127.0.0.1:{port}: started the container {name} ({image}) there"
        f" (`docker stop {name}` stops it)"
    ]
    await _serves_amqp(port)

    await asyncio.to_thread(subprocess.run, ["docker", "stop", name], capture_output=True, check=True, timeout=120)
    again = await asyncio.to_thread(_run, broker, port, "docker", MISSIONS_BROKER_IMAGE=image)
    assert again.returncode == 0, again.stderr
    assert _broker_lines(again) == [
        f"scripts/broker: nothing listened on 127.0.0.1:{port}: started the existing container {name} again there"
        f" (`docker stop {name}` stops it)"
    ]
    await _serves_amqp(port)


async def test_scripts_up_says_how_to_get_a_broker_when_it_cannot_start_one() -> None:
    port = free_port()
    result = await asyncio.to_thread(_run, [str(ROOT / "scripts" / "up")], port, "no")
    assert result.returncode == 1, result.stderr
    assert _broker_lines(result) == [
        f"scripts/broker: nothing listens on 127.0.0.1:{port}: install RabbitMQ >= 3.10 (apt-get install"
        " rabbitmq-server), or start Docker, or point the URL at a running one"
    ]
    assert "mission-service" not in result.stderr
