"""End to end: the HTTP/JSON API (docs/http.md) of the real mission-service, with a real worker."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from missions.v1 import mission_service_pb2 as pb
from tests.e2e.secure import SecureStack
from tests.sse import ServerSentEvent, read_events
from tests.support import Process, Stack, free_port, payload, watch_events

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TIMEOUT = 60


@pytest.fixture
async def secure(namespace: str, amqp_url: str, tmp_path: pathlib.Path) -> AsyncIterator[SecureStack]:
    async with SecureStack(namespace, amqp_url, tmp_path) as stack:
        yield stack


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as client:
        yield client


async def _serve_http(stack: Stack, port: int | None = None) -> str:
    """Start the stack's service with an HTTP port too (``port``, else a free one); the API's base URL."""
    port = port or free_port()
    await stack.start_service("--http-listen", f"127.0.0.1:{port}")
    return f"http://127.0.0.1:{port}/api/v1"


async def _json(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    body = await response.json()
    assert response.status == status, body
    return body


def _reason(body: Any) -> tuple[int, str, str, str]:
    """(code, status, ErrorInfo reason, BadRequest field or "") of an error body."""
    details = {detail["@type"].rpartition(".")[2]: detail for detail in body["error"]["details"]}
    violations = details.get("BadRequest", {}).get("field_violations", [{"field": ""}])
    return body["error"]["code"], body["error"]["status"], details["ErrorInfo"]["reason"], violations[0]["field"]


async def _events(
    session: aiohttp.ClientSession, url: str, count: int | None = None, **kwargs: Any
) -> list[ServerSentEvent]:
    """The SSE events of ``url`` until the stream ends, or until ``count`` (then hang up)."""
    seen: list[ServerSentEvent] = []
    async with asyncio.timeout(TIMEOUT), session.get(url, **kwargs) as response:
        assert response.status == 200, await response.text()
        async for event in read_events(response):
            seen.append(event)
            if len(seen) == count:
                break
    return seen


async def test_submit_watch_get_list_and_cancel_over_json(stack: Stack, session: aiohttp.ClientSession) -> None:
    api = await _serve_http(stack)
    await stack.start_consuming_worker()
    request = {"type": "echo", "payload": {"text": "hi"}, "labels": {"via": "http"}, "idempotency_key": "e2e-1"}
    headers = {"x-correlation-id": "e2e-http"}
    mission = (await _json(await session.post(f"{api}/missions", json=request, headers=headers)))["mission"]
    assert (mission["type"], mission["correlation_id"], mission["labels"]) == ("echo", "e2e-http", {"via": "http"})

    events = await _events(session, f"{api}/events", params={"mission_ids": mission["id"]})
    kinds = [event.json()["type"] for event in events]
    assert kinds == ["EVENT_TYPE_CREATED", "EVENT_TYPE_STARTED", "EVENT_TYPE_COMPLETED"]
    assert events[-1].json()["completed"]["result"] == {"text": "hi"}
    got = (await _json(await session.get(f"{api}/missions/{mission['id']}")))["mission"]
    assert (got["state"], got["last_sequence"]) == ("MISSION_STATE_SUCCEEDED", events[-1].id)
    listed = await _json(
        await session.get(f"{api}/missions", params={"label_selector": "via=http", "states": "MISSION_STATE_SUCCEEDED"})
    )
    assert [found["id"] for found in listed["missions"]] == [mission["id"]]

    # No worker handles this type: the mission waits, and is cancelled.
    waiting = (await _json(await session.post(f"{api}/missions", json={"type": "nobody-runs-this"})))["mission"]
    cancel = f"{api}/missions/{waiting['id']}:cancel"
    cancelled = (await _json(await session.post(cancel, json={"reason": "not needed"})))["mission"]
    assert cancelled["state"] == "MISSION_STATE_CANCELLED"

    reused = await session.post(f"{api}/missions", json={**request, "type": "noop"})
    assert _reason(await _json(reused, 409))[:3] == (409, "ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED")
    bad = await session.post(f"{api}/missions", json={"type": "echo", "priority": "PRIORITY_URGENT"})
    assert _reason(await _json(bad, 400))[::3] == (400, "priority")
    missing = await session.get(f"{api}/missions/00000000-0000-0000-0000-000000000000")
    assert _reason(await _json(missing, 404))[2] == "MISSION_NOT_FOUND"
    assert _reason(await _json(await session.get(f"{api}/nothing"), 404))[2] == "NOT_FOUND"


async def test_an_sse_watch_resumed_after_a_disconnect_equals_the_grpc_watch(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    api = await _serve_http(stack)
    await stack.start_consuming_worker()
    missions = []
    for n in range(6):
        # Sleeps report progress ten times: events of several missions interleave.
        request = (
            pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=0.3))
            if n % 2
            else pb.SubmitMissionRequest(type="echo")
        )
        missions.append((await stack.stub.SubmitMission(request)).mission.id)
    query = [("mission_ids", mission_id) for mission_id in missions]

    first = await _events(session, f"{api}/events", 7, params=query)
    rest = await _events(session, f"{api}/events", params=query, headers={"Last-Event-ID": first[-1].id or ""})
    over_grpc = pb.WatchEventsRequest(mission_ids=missions)
    async with asyncio.timeout(TIMEOUT):
        expected = [event.sequence async for event in watch_events(stack.stub, over_grpc)]
    assert [int(event.id or 0) for event in first + rest] == expected
    assert [event.json()["sequence"] for event in first + rest] == [str(sequence) for sequence in expected]


async def test_a_restart_ends_the_stream_with_its_position_and_the_next_service_resumes_it(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    api = await _serve_http(stack, port)
    waiting = (await _json(await session.post(f"{api}/missions", json={"type": "resize"})))["mission"]
    query = {"mission_ids": waiting["id"]}
    async with asyncio.timeout(TIMEOUT), session.get(f"{api}/events", params=query) as response:
        events = read_events(response)
        created = await anext(events)
        assert stack.service is not None
        assert await asyncio.to_thread(stack.service.stop) == 0
        ended = await anext(events)
    assert (ended.event, ended.id) == ("error", created.id)
    assert _reason(ended.json())[:3] == (503, "UNAVAILABLE", "SERVICE_STOPPING")

    await _serve_http(stack, port)
    await stack.start_consuming_worker("--handlers", "tests.e2e.routed_handlers")
    rest = await _events(session, f"{api}/events", params=query, headers={"Last-Event-ID": ended.id or ""})
    over_grpc = pb.WatchEventsRequest(mission_ids=[waiting["id"]])
    async with asyncio.timeout(TIMEOUT):
        expected = [event.sequence async for event in watch_events(stack.stub, over_grpc)]
    assert [int(event.id or 0) for event in [created, *rest]] == expected


async def test_tokens_roles_and_tls_as_on_the_grpc_port(secure: SecureStack, session: aiohttp.ClientSession) -> None:
    port = free_port()
    await secure.start_service(*secure.service_args(), "--http-listen", f"127.0.0.1:{port}")
    api = f"https://localhost:{port}/api/v1"
    trusting = ssl.create_default_context(cafile=secure.ca.cert)

    def post(path: str, principal: str | None, body: Any) -> Any:
        headers = {"Authorization": f"Bearer {secure.tokens[principal]}"} if principal else {}
        return session.post(f"{api}{path}", json=body, headers=headers, ssl=trusting)

    assert _reason(await _json(await post("/missions", None, {"type": "echo"}), 401))[2] == "TOKEN_MISSING"
    unknown = await session.get(f"{api}/stats", headers={"Authorization": "Bearer nope"}, ssl=trusting)
    assert _reason(await _json(unknown, 401))[:3] == (401, "UNAUTHENTICATED", "TOKEN_UNKNOWN")
    denied = await _json(await post("/missions", "rita", {"type": "echo"}), 403)
    assert _reason(denied)[:3] == (403, "PERMISSION_DENIED", "ROLE_REQUIRED")
    mission = (await _json(await post("/missions", "alice", {"type": "nobody-runs-this"})))["mission"]
    assert mission["submitted_by"] == "alice"
    others = await _json(await post(f"/missions/{mission['id']}:cancel", "bob", {}), 403)
    assert _reason(others)[1] == "PERMISSION_DENIED"
    assert _reason(await _json(await post("/dead-letters:purge", "alice", {}), 403))[2] == "ROLE_REQUIRED"
    await _json(await post("/dead-letters:purge", "ada", {"dry_run": True}))
    cancelled = (await _json(await post(f"/missions/{mission['id']}:cancel", "ada", {})))["mission"]
    assert cancelled["state"] == "MISSION_STATE_CANCELLED"
    with pytest.raises(aiohttp.ClientError):  # no plaintext beside TLS
        await session.get(f"http://127.0.0.1:{port}/api/v1/stats")
    assert f"HTTP API on https://127.0.0.1:{port}/api/v1/ (TLS, bearer tokens)" in secure.log()
    assert not [token for token in secure.tokens.values() if token in secure.log()]


async def _refused_start(stack: Stack, name: str, *args: str) -> tuple[int, str]:
    process = Process(["mission_service", *args], stack.env(), stack.directory / f"{name}.log").start()
    try:
        code = await asyncio.to_thread(process.wait, 90)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the service did not stop:\n{process.output()}") from None
    finally:
        process.kill()
    return code, process.output()


async def test_an_exposed_or_busy_http_port_is_refused_at_start(stack: Stack) -> None:
    code, output = await _refused_start(stack, "exposed", "--http-listen", f"0.0.0.0:{free_port()}")
    assert code == 2 and "--http-listen 0.0.0.0:" in output and "not a loopback address" in output, output
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        code, output = await _refused_start(stack, "busy", "--http-listen", busy)
    assert code == 1 and output.endswith(f"cannot listen on {busy}: address already in use\n"), output
    assert len(output.splitlines()) == 1, output  # before it touched the broker
