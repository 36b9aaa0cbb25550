"""The compose stack in containers, end to end, through its published ports: submit and
watch, the dashboard and HTTP API, three workers with one container killed mid-run, the
service container restarted under a watch.

scripts/container-test brings the stack up and sets MISSIONS_CONTAINER_TEST_SERVER (the
service's published gRPC address), MISSIONS_CONTAINER_TEST_HTTP (its dashboard and HTTP API)
and MISSIONS_CONTAINER_TEST_COMPOSE (the Compose command, with COMPOSE_PROJECT_NAME and
COMPOSE_FILE in the environment); without them every test skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from missions.client import AsyncClient
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from tests.support import eventually

SERVER = os.environ.get("MISSIONS_CONTAINER_TEST_SERVER")
HTTP = os.environ.get("MISSIONS_CONTAINER_TEST_HTTP")
COMPOSE = shlex.split(os.environ.get("MISSIONS_CONTAINER_TEST_COMPOSE", "docker-compose"))

pytestmark = [
    pytest.mark.skipif(SERVER is None, reason="needs the compose stack that scripts/container-test brings up"),
    pytest.mark.timeout(300),
]

E = events_pb2
# A docker or compose command: scaling starts containers and a restart waits for the stop.
COMMAND_S = 180
# Long enough that a worker killed as soon as it starts one is still running it.
SLEEP_S = 8
MISSIONS = 24


async def _run(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(COMMAND_S):
        output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, f"{shlex.join(argv)} exited with {process.returncode}:\n{text}"
    return text


async def _compose(*args: str) -> str:
    return await _run(*COMPOSE, *args)


async def _running_workers() -> set[str]:
    """The running worker containers' short ids, which are their hostnames (Worker.host)."""
    project = os.environ["COMPOSE_PROJECT_NAME"]
    listing = await _run(
        "docker", "ps", "-q",
        "--filter", f"label=com.docker.compose.project={project}",
        "--filter", "label=com.docker.compose.service=worker",
    )  # fmt: skip
    return set(listing.split())


async def _service_started_at() -> str:
    """When the service's container last started (its process, that is)."""
    (container,) = (await _compose("ps", "-q", "mission-service")).split()
    return (await _run("docker", "inspect", "-f", "{{.State.StartedAt}}", container)).strip()


def _host(worker_id: str) -> str:
    """The host of a default worker id, "<host>:<pid>"."""
    return worker_id.rsplit(":", 1)[0]


async def _first_host(started: AsyncIterator[events_pb2.MissionEvent], hosts: set[str]) -> str:
    """The first of ``hosts`` that a STARTED event names."""
    async for event in started:
        if (host := _host(event.started.worker_id)) in hosts:
            return host
    raise AssertionError(f"the watch ended before any of {sorted(hosts)} started a mission")


async def _serving() -> bool:
    assert SERVER is not None
    async with grpc.aio.insecure_channel(SERVER) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5, wait_for_ready=True
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    assert SERVER is not None
    async with AsyncClient(SERVER, timeout=30) as client:
        yield client


async def test_submit_and_watch_through_the_published_port(client: AsyncClient) -> None:
    mission = await client.submit("echo", {"hello": "containers"})
    async with asyncio.timeout(60):
        types = [event.type async for event in client.watch(mission_ids=[mission.id])]
    assert types[0] == E.EVENT_TYPE_CREATED
    assert E.EVENT_TYPE_STARTED in types
    assert types[-1] == E.EVENT_TYPE_COMPLETED
    assert await client.result(mission.id, timeout=60) == {"hello": "containers"}


async def test_the_dashboard_and_the_http_api_through_the_published_port(client: AsyncClient) -> None:
    assert HTTP is not None
    mission = await client.submit("echo", {"over": "http"})
    await client.result(mission.id, timeout=60)
    async with aiohttp.ClientSession(f"http://{HTTP}", timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(f"/api/v1/missions/{mission.id}") as answer:
            assert answer.status == 200
            body = await answer.json()
        assert (body["mission"]["state"], body["mission"]["result"]) == ("MISSION_STATE_SUCCEEDED", {"over": "http"})
        async with http.get("/") as page:
            assert page.status == 200 and page.content_type == "text/html"


async def test_missions_of_a_killed_worker_container_finish_once_elsewhere(client: AsyncClient) -> None:
    await _compose("up", "-d", "--no-recreate", "--scale", "worker=3", "worker")
    running = await _running_workers()
    assert len(running) == 3, running

    async def three_active() -> bool:
        workers = await client.workers()
        return {w.host for w in workers if w.state == worker_pb2.WORKER_STATE_ACTIVE} >= running

    await eventually(three_active, "the three worker containers heard from", timeout=120)

    ids = [(await client.submit("sleep", {"seconds": SLEEP_S})).id for _ in range(MISSIONS)]
    # The first container seen running one of them is killed (SIGKILL) at once.
    # (The watches left unfinished here end with the client's channel.)
    async with asyncio.timeout(60):
        victim = await _first_host(client.watch(mission_ids=ids, types=[E.EVENT_TYPE_STARTED]), running)
    await _run("docker", "kill", victim)

    finals = [await client.wait(mission_id, timeout=180) for mission_id in ids]
    assert [m.state for m in finals] == [mission_pb2.MISSION_STATE_SUCCEEDED] * MISSIONS
    async with asyncio.timeout(60):
        history = [event async for event in client.watch(mission_ids=ids)]
    completed = Counter(event.mission_id for event in history if event.type == E.EVENT_TYPE_COMPLETED)
    assert completed == dict.fromkeys(ids, 1)
    hosts: defaultdict[str, list[str]] = defaultdict(list)
    for event in history:
        if event.type == E.EVENT_TYPE_STARTED:
            hosts[event.mission_id].append(_host(event.started.worker_id))
    cut = [mission_id for mission_id in ids if victim in hosts[mission_id]]
    assert cut, f"no mission started on {victim}"
    for mission_id in cut:
        assert hosts[mission_id][-1] != victim, f"{mission_id} ran only on the killed worker: {hosts[mission_id]}"
    finishers = {_host(event.source) for event in history if event.type == E.EVENT_TYPE_COMPLETED}
    assert victim not in finishers


async def test_a_watch_resumes_across_a_service_container_restart(client: AsyncClient) -> None:
    start = (await client.stats()).last_sequence
    seen: list[events_pb2.MissionEvent] = []

    async def follow() -> None:
        async for event in client.watch(after_sequence=start):
            seen.append(event)

    watcher = asyncio.create_task(follow())
    try:
        before = [(await client.submit("echo", {"n": n})).id for n in range(5)]
        for mission_id in before:
            await client.wait(mission_id, timeout=60)
        started_at = await _service_started_at()
        await _compose("restart", "mission-service")
        assert await _service_started_at() != started_at
        await eventually(_serving, "the restarted service serving", timeout=120)
        after = [(await client.submit("echo", {"n": n})).id for n in range(5, 10)]
        for mission_id in after:
            await client.wait(mission_id, timeout=60)

        async def watched_all() -> bool:
            done = {event.mission_id for event in seen if event.type == E.EVENT_TYPE_COMPLETED}
            return done >= {*before, *after}

        await eventually(watched_all, "the watch seeing every mission complete", timeout=120)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    last = seen[-1].sequence
    fresh: list[int] = []
    async with asyncio.timeout(60):
        async for event in client.watch(after_sequence=start):
            fresh.append(event.sequence)
            if event.sequence >= last:
                break
    assert [event.sequence for event in seen] == fresh
