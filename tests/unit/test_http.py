"""The HTTP/JSON API (mission_service/http/) over the service harness: the real commands, queries,
store and hub with the broker faked, served by aiohttp's TestServer beside the gRPC port."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from grpc_status import rpc_status

from mission_service import cli as service_cli
from mission_service.http.access import Access
from mission_service.http.proto_json import to_json
from mission_service.http.routes import ROUTES, build_app
from mission_service.http.server import serving_http
from mission_service.http.sessions import Sessions
from mission_service.limits import Limits
from mission_service.operations import MissionOperations
from mission_service.settings import ServiceSettings
from missions.startup import ListenError
from missions.tls import TlsFiles
from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.e2e.secure_certs import Authority
from tests.sse import ServerSentEvent, read_events
from tests.unit.service_harness import TIMEOUT, Service, running_service, success_events, tokens_file

E = events_pb2
M = mission_pb2


@contextlib.asynccontextmanager
async def _api(
    tokens: pathlib.Path | None = None, watch_heartbeat: timedelta = timedelta(seconds=15), **access: bool
) -> AsyncIterator[tuple[Service, TestClient[Any, Any]]]:
    async with running_service(tokens_file=tokens, watch_heartbeat=watch_heartbeat) as service:
        gate = Access(
            service.tokens,
            client_certificates=access.get("client_certificates", False),
            loopback_hosts_only=access.get("loopback_hosts_only", True),
        )
        app = build_app(service.operations, gate, max_body_bytes=Limits().max_request_bytes)
        async with TestClient(TestServer(app)) as client:
            yield service, client


@pytest.fixture
async def api() -> AsyncIterator[tuple[Service, TestClient[Any, Any]]]:
    async with _api() as pair:
        yield pair


async def _json(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    body = await response.json()
    assert response.status == status, body
    return body


def _error(body: Any) -> tuple[int, str, str, str]:
    """(code, status, ErrorInfo reason, BadRequest field or "") of an AIP-193 body."""
    error = body["error"]
    details = {detail["@type"].rpartition("/")[2]: detail for detail in error["details"]}
    info = details["google.rpc.ErrorInfo"]
    assert info["domain"] == "missions.v1"
    violations = details.get("google.rpc.BadRequest", {}).get("field_violations", [{"field": ""}])
    return error["code"], error["status"], info["reason"], violations[0]["field"]


def test_every_mission_service_method_has_a_route_and_an_operation() -> None:
    methods = set(pb.DESCRIPTOR.services_by_name["MissionService"].methods_by_name)
    assert sorted(route.rpc for route in ROUTES) == sorted(methods)
    assert all(callable(getattr(MissionOperations, method, None)) for method in methods)
    assert len({(route.verb, route.path) for route in ROUTES}) == len(ROUTES)


async def test_submit_get_and_list_in_proto_json(api: tuple[Service, TestClient[Any, Any]]) -> None:
    service, client = api
    request = {"type": "echo", "payload": {"n": 2}, "labels": {"team": "ops"}, "priority": "PRIORITY_HIGH"}
    headers = {"x-correlation-id": "trace-7"}
    submitted = (await _json(await client.post("/api/v1/missions", json=request, headers=headers)))["mission"]
    assert submitted["state"] == "MISSION_STATE_QUEUED" and submitted["labels"] == {"team": "ops"}
    assert submitted["priority"] == "PRIORITY_HIGH" and "create_time" in submitted and "max_attempts" in submitted
    [created] = service.broker.log
    assert created.correlation_id == "trace-7"
    got = await _json(await client.get(f"/api/v1/missions/{submitted['id']}"))
    grpc_got = await service.stub.GetMission(pb.GetMissionRequest(mission_id=submitted["id"]), timeout=TIMEOUT)
    assert got == to_json(grpc_got)  # the same message, the same names
    for states in (["MISSION_STATE_QUEUED"], [str(M.MISSION_STATE_QUEUED)], ["MISSION_STATE_RUNNING"]):
        query = [("states", state) for state in states] + [("page_size", "10"), ("type", "echo")]
        listed = await _json(await client.get("/api/v1/missions", params=query))
        expected = [] if states == ["MISSION_STATE_RUNNING"] else [submitted["id"]]
        assert [mission["id"] for mission in listed.get("missions", [])] == expected
    since = {"min_create_time": "2000-01-01T00:00:00Z", "order_by": "create_time desc"}
    assert len((await _json(await client.get("/api/v1/missions", params=since)))["missions"]) == 1


async def test_batch_submit_cancel_and_the_read_only_routes(api: tuple[Service, TestClient[Any, Any]]) -> None:
    service, client = api
    batch = {"missions": [{"type": "echo"}, {"type": ""}]}
    results = (await _json(await client.post("/api/v1/missions:batchSubmit", json=batch)))["results"]
    assert results[0]["mission"]["state"] == "MISSION_STATE_QUEUED"
    assert (results[1]["error"]["reason"], results[1]["error"]["field"]) == ("INVALID_ARGUMENT", "type")
    mission_id = results[0]["mission"]["id"]
    cancel = f"/api/v1/missions/{mission_id}:cancel"
    cancelled = (await _json(await client.post(cancel, json={"reason": "no longer needed"})))["mission"]
    assert cancelled["state"] == "MISSION_STATE_CANCELLED"
    assert (await _json(await client.post(cancel, json={})))["mission"]["state"] == "MISSION_STATE_CANCELLED"
    mismatch = await _json(await client.post(cancel, json={"mission_id": "x" * 8}), 400)
    assert _error(mismatch)[3] == "mission_id"
    stats = await _json(await client.get("/api/v1/stats"))
    assert int(stats["last_sequence"]) == service.broker.log[-1].sequence
    assert await _json(await client.get("/api/v1/workers", params={"include_gone": "true"})) == {}
    assert await _json(await client.get("/api/v1/dead-letters")) == {}
    dry_run = {"dry_run": True, "filter": {"type": "echo"}}
    assert await _json(await client.post("/api/v1/dead-letters:redrive", json=dry_run)) == {}
    assert await _json(await client.post("/api/v1/dead-letters:purge", json=dry_run)) == {}
    unknown = await _json(await client.post(f"/api/v1/missions/{uuid.UUID(int=0)}:redrive", json={}), 404)
    assert _error(unknown)[:3] == (404, "NOT_FOUND", "MISSION_NOT_FOUND")


async def test_errors_are_the_grpc_ports_in_aip_193_bodies(api: tuple[Service, TestClient[Any, Any]]) -> None:
    service, client = api
    missing = "00000000-0000-0000-0000-000000000000"
    body = await _json(await client.get(f"/api/v1/missions/{missing}"), 404)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.GetMission(pb.GetMissionRequest(mission_id=missing), timeout=TIMEOUT)
    status = rpc_status.from_call(raised.value)
    assert status is not None
    assert body["error"]["message"] == status.message
    assert body["error"]["details"] == [to_json(detail) for detail in status.details]

    bad = {"type": "echo", "max_attempts": "many"}
    assert _error(await _json(await client.post("/api/v1/missions", json=bad), 400)) == (
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "max_attempts",
    )
    limits = {"type": "echo", "max_attempts": 10_000}  # parses, but past the service's limit
    assert _error(await _json(await client.post("/api/v1/missions", json=limits), 400))[3] == "max_attempts"
    unknown_field = await _json(await client.post("/api/v1/missions", json={"type": "echo", "colour": "red"}), 400)
    assert _error(unknown_field)[3] == "colour"
    for raw in (b"{not json", b"[1, 2]"):
        headers = {"Content-Type": "application/json"}
        not_json = await _json(await client.post("/api/v1/missions", data=raw, headers=headers), 400)
        assert _error(not_json)[3] == "request"
    assert _error(await _json(await client.get("/api/v1/missions", params={"page_size": "x"}), 400))[3] == "page_size"
    twice = [("type", "a"), ("type", "b")]
    assert _error(await _json(await client.get("/api/v1/missions", params=twice), 400))[3] == "type"
    bad_state = await _json(await client.get("/api/v1/missions", params={"states": "MISSION_STATE_BORED"}), 400)
    assert _error(bad_state)[3] == "states"

    key = {"type": "echo", "idempotency_key": "k-1"}
    await _json(await client.post("/api/v1/missions", json=key))
    reused = await _json(await client.post("/api/v1/missions", json={**key, "type": "sleep"}), 409)
    assert _error(reused)[:3] == (409, "ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED")


async def test_routing_refusals_have_the_same_body(api: tuple[Service, TestClient[Any, Any]]) -> None:
    _, client = api
    assert _error(await _json(await client.get("/api/v1/nothing"), 404))[:3] == (404, "NOT_FOUND", "NOT_FOUND")
    assert _error(await _json(await client.get("/nothing"), 404))[0] == 404
    wrong = await client.delete("/api/v1/missions")
    assert _error(await _json(wrong, 405))[2] == "METHOD_NOT_ALLOWED"
    assert set(wrong.headers["Allow"].split(",")) == {"GET", "POST"}
    # Only JSON bodies: a cross-site form or text/plain POST needs no CORS preflight.
    form = await client.post("/api/v1/missions", data={"type": "echo"})
    assert _error(await _json(form, 415))[2] == "UNSUPPORTED_MEDIA_TYPE"
    bare = await client.post("/api/v1/dead-letters:purge")
    assert (await _json(bare, 415))["error"]["code"] == 415
    huge = {"type": "echo", "payload": {"blob": "x" * (Limits().max_request_bytes + 1)}}
    assert _error(await _json(await client.post("/api/v1/missions", json=huge), 413))[1] == "RESOURCE_EXHAUSTED"


async def test_without_authentication_only_loopback_host_names_are_served() -> None:
    async with _api() as (_, client):
        for host in ("localhost:1", "127.0.0.1", "[::1]:8080"):
            await _json(await client.get("/api/v1/stats", headers={"Host": host}))
        rebound = await client.get("/api/v1/stats", headers={"Host": "attacker.example:8080"})
        assert _error(await _json(rebound, 403))[2] == "HOST_NOT_LOOPBACK"
    async with _api(loopback_hosts_only=False) as (_, client):
        await _json(await client.get("/api/v1/stats", headers={"Host": "missions.example"}))


async def test_tokens_and_roles_as_on_the_grpc_port(tmp_path: pathlib.Path) -> None:
    tokens = tokens_file(tmp_path, alice="submitter", rita="reader", ada="admin")
    async with _api(tokens, loopback_hosts_only=False) as (_, client):

        def bearer(name: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {name}-token"}

        for headers, reason in (({}, "TOKEN_MISSING"), (bearer("mallory"), "TOKEN_UNKNOWN")):
            refused = await _json(await client.get("/api/v1/stats", headers=headers), 401)
            assert _error(refused)[:3] == (401, "UNAUTHENTICATED", reason)
        # Refused before the body is read: an unauthenticated caller learns nothing of its request.
        assert _error(await _json(await client.post("/api/v1/missions", data=b"{"), 401))[2] == "TOKEN_MISSING"
        submit = {"type": "echo"}
        denied = await _json(await client.post("/api/v1/missions", json=submit, headers=bearer("rita")), 403)
        assert _error(denied)[:3] == (403, "PERMISSION_DENIED", "ROLE_REQUIRED")
        mission = (await _json(await client.post("/api/v1/missions", json=submit, headers=bearer("alice"))))["mission"]
        assert mission["submitted_by"] == "alice"
        await _json(await client.get(f"/api/v1/missions/{mission['id']}", headers=bearer("rita")))
        purge = await client.post("/api/v1/dead-letters:purge", json={}, headers=bearer("alice"))
        assert _error(await _json(purge, 403))[2] == "ROLE_REQUIRED"
        await _json(await client.post("/api/v1/dead-letters:purge", json={}, headers=bearer("ada")))
        watch = await client.get("/api/v1/events", headers=bearer("nobody"))
        assert _error(await _json(watch, 401))[2] == "TOKEN_UNKNOWN"


async def _sse(client: TestClient[Any, Any], count: int | None = None, **kwargs: Any) -> list[ServerSentEvent]:
    """The events of a watch until it ends (or ``count`` of them, then hang up)."""
    events: list[ServerSentEvent] = []
    async with asyncio.timeout(TIMEOUT), client.get("/api/v1/events", **kwargs) as response:
        assert response.status == 200 and response.content_type == "text/event-stream"
        async for event in read_events(response):
            events.append(event)
            if len(events) == count:
                break
    return events


async def test_events_stream_to_the_final_one_and_resume_from_last_event_id(
    api: tuple[Service, TestClient[Any, Any]],
) -> None:
    service, client = api
    mission = await service.submit()
    await service.run_to_completion(mission)
    query = {"mission_ids": mission.id}
    events = await _sse(client, params=query)
    assert [event.json()["type"] for event in events] == [
        "EVENT_TYPE_CREATED",
        "EVENT_TYPE_STARTED",
        "EVENT_TYPE_PROGRESS",
        "EVENT_TYPE_COMPLETED",
    ]
    assert [event.id for event in events] == [str(event.sequence) for event in service.broker.log]
    assert {event.event for event in events} == {"message"}
    first = await _sse(client, 2, params=query)
    rest = await _sse(client, params=query, headers={"Last-Event-ID": first[-1].id or ""})
    assert [event.id for event in first + rest] == [event.id for event in events]
    # Last-Event-ID wins over after_sequence: a browser reconnects to the same URL.
    resumed = await _sse(client, params={**query, "after_sequence": "0"}, headers={"Last-Event-ID": events[2].id or ""})
    assert [event.id for event in resumed] == [events[3].id]
    bad = await client.get("/api/v1/events", params=query, headers={"Last-Event-ID": "soon"})
    assert _error(await _json(bad, 400))[3] == "Last-Event-ID"


async def test_a_refused_watch_is_an_http_status_not_a_stream(api: tuple[Service, TestClient[Any, Any]]) -> None:
    _, client = api
    unknown = await client.get("/api/v1/events", params={"mission_ids": "00000000-0000-0000-0000-000000000000"})
    assert _error(await _json(unknown, 404))[2] == "MISSION_NOT_FOUND"
    bad_type = await client.get("/api/v1/events", params={"types": "EVENT_TYPE_UNSPECIFIED"})
    assert _error(await _json(bad_type, 400))[3] == "types"


async def test_a_stream_the_service_ends_says_why_and_where_to_resume(
    api: tuple[Service, TestClient[Any, Any]],
) -> None:
    service, client = api
    mission = await service.submit()
    async with asyncio.timeout(TIMEOUT), client.get("/api/v1/events", params={"mission_ids": mission.id}) as response:
        events = read_events(response)
        created = await anext(events)
        service.hub.close()
        ended = await anext(events)
        assert [event async for event in events] == []
    assert (ended.event, ended.id) == ("error", created.id)
    assert _error(ended.json())[:3] == (503, "UNAVAILABLE", "SERVICE_STOPPING")
    assert ended.json()["error"]["details"][0]["metadata"] == {"last_sequence": created.id}


async def test_heartbeats_carry_the_position_a_resumed_watch_starts_from() -> None:
    async with _api(watch_heartbeat=timedelta(milliseconds=50)) as (service, client):
        await service.submit()
        [heartbeat] = await _sse(client, 1, params={"mission_types": "other"})
        assert (heartbeat.event, heartbeat.id) == ("heartbeat", str(service.broker.log[-1].sequence))
        assert heartbeat.json()["last_sequence"] == heartbeat.id and "time" in heartbeat.json()


async def test_a_hung_up_watch_frees_its_stream(api: tuple[Service, TestClient[Any, Any]]) -> None:
    service, client = api
    mission = await service.submit()
    await _sse(client, 1, params={"mission_ids": mission.id})
    async with asyncio.timeout(TIMEOUT):
        await service.hub.unsubscribed.wait()
    await service.worker_publishes(*success_events(mission))


def test_an_exposed_http_listen_needs_tls_and_authentication_unless_insecure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    problem = ServiceSettings(http_listen="0.0.0.0:8080").exposure_problem()
    assert problem is not None and problem.startswith("--http-listen 0.0.0.0:8080: not a loopback address")
    assert ServiceSettings(http_listen="127.0.0.1:8080").exposure_problem() is None
    with pytest.raises(SystemExit):
        service_cli.parse(["--http-listen", "0.0.0.0:8080"])
    assert "--http-listen 0.0.0.0:8080: not a loopback address" in capsys.readouterr().err
    settings, _ = service_cli.parse(["--http-listen", "0.0.0.0:8080", "--insecure"])
    assert settings.http_listen == "0.0.0.0:8080"
    with pytest.raises(SystemExit):
        service_cli.parse(["--http-listen", "8080"])


async def test_serving_http_on_a_busy_port_is_a_one_line_listen_error() -> None:
    async with running_service() as service:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            listen = f"127.0.0.1:{taken.getsockname()[1]}"
            with pytest.raises(ListenError, match=rf"cannot listen on {listen}: .*in use \(--http-listen\)"):
                async with serving_http(ServiceSettings(http_listen=listen), service.operations, None):
                    pass


async def test_serving_http_with_mtls_names_callers_by_their_certificate(tmp_path: pathlib.Path) -> None:
    ca = Authority("unit", tmp_path)
    server = ca.issue("server", server=True)
    client = ca.issue("dashboard", server=False)
    tls = TlsFiles(ca=ca.cert, cert=server.cert, key=server.key)
    settings = ServiceSettings(http_listen="127.0.0.1:0", tls=tls)
    async with running_service() as service, serving_http(settings, service.operations, None) as port:
        trusting = ssl.create_default_context(cafile=ca.cert)
        url = f"https://localhost:{port}/api/v1/missions"
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):  # no client certificate: no handshake
                await session.post(url, json={"type": "echo"}, ssl=trusting)
            trusting.load_cert_chain(client.cert, client.key)
            async with session.post(url, json={"type": "echo"}, ssl=trusting) as response:
                assert (await _json(response))["mission"]["submitted_by"] == "dashboard"


async def test_a_browser_signs_in_with_a_token_and_its_cookie_stands_for_it_with_a_csrf_token(
    tmp_path: pathlib.Path,
) -> None:
    tokens = tokens_file(tmp_path, alice="submitter")
    async with _api(tokens, loopback_hosts_only=False) as (_, client):
        assert _error(await _json(await client.get("/api/v1/session"), 401))[2] == "TOKEN_MISSING"
        form = await client.post("/api/v1/session", data={"token": "alice-token"})
        assert _error(await _json(form, 415))[2] == "UNSUPPORTED_MEDIA_TYPE"
        wrong = await client.post("/api/v1/session", json={"token": "mallory-token"})
        assert _error(await _json(wrong, 401))[2] == "TOKEN_UNKNOWN"

        signed_in = await client.post("/api/v1/session", json={"token": "alice-token"})
        who = await _json(signed_in)
        assert (who["principal"], who["roles"], who["authenticated"], who["sign_in"]) == (
            "alice",
            ["submitter"],
            True,
            True,
        )
        cookie = signed_in.headers["Set-Cookie"]
        assert all(flag in cookie for flag in ("missions_session=", "HttpOnly", "SameSite=Strict", "Path=/"))
        assert "Secure" not in cookie  # plaintext here; Sessions(secure=True) under TLS
        csrf = {"X-CSRF-Token": who["csrf_token"]}
        assert (await _json(await client.get("/api/v1/session")))["csrf_token"] == who["csrf_token"]

        # The cookie is the token: its roles apply, reads need nothing more.
        await _json(await client.get("/api/v1/missions"))
        assert _error(await _json(await client.get("/api/v1/stats"), 403))[2] == "ROLE_REQUIRED"
        # Every state-changing request shows the session's CSRF token, which a cross-site page cannot read.
        for headers in ({}, {"X-CSRF-Token": "guess"}):
            refused = await client.post("/api/v1/missions", json={"type": "echo"}, headers=headers)
            assert _error(await _json(refused, 403))[:3] == (403, "PERMISSION_DENIED", "CSRF_TOKEN_INVALID")
        mission = (await _json(await client.post("/api/v1/missions", json={"type": "echo"}, headers=csrf)))["mission"]
        assert mission["submitted_by"] == "alice"

        assert _error(await _json(await client.delete("/api/v1/session"), 403))[2] == "CSRF_TOKEN_INVALID"
        session_id = client.session.cookie_jar.filter_cookies(client.make_url("/"))["missions_session"].value
        signed_out = await client.delete("/api/v1/session", headers=csrf)
        await _json(signed_out)
        assert 'missions_session=""' in signed_out.headers["Set-Cookie"]
        ended = await client.get("/api/v1/missions", cookies={"missions_session": session_id})
        assert _error(await _json(ended, 401))[2] == "SESSION_UNKNOWN"


async def test_without_tokens_there_is_no_sign_in(api: tuple[Service, TestClient[Any, Any]]) -> None:
    _, client = api
    who = await _json(await client.get("/api/v1/session"))
    assert (who["authenticated"], who["sign_in"], "csrf_token" in who) == (False, False, False)
    refused = await client.post("/api/v1/session", json={"token": "anything"})
    assert _error(await _json(refused, 400))[1] == "FAILED_PRECONDITION"


def test_sessions_end_when_they_expire_and_the_oldest_gives_way() -> None:
    clock = [0.0]
    sessions = Sessions(secure=True, lifetime=10, limit=2, clock=lambda: clock[0])
    first, _ = sessions.start("a")
    second, session = sessions.start("b")
    assert sessions.get(second) == session and session.token == "b"
    third, _ = sessions.start("c")
    assert (sessions.get(first), sessions.get(third) is not None) == (None, True)
    clock[0] = 10
    assert sessions.get(second) is None
    response = web.Response()
    sessions.set_cookie(response, third)
    assert response.cookies["missions_session"]["secure"] is True


async def test_the_dashboard_is_served_at_the_root_with_a_strict_content_security_policy(
    api: tuple[Service, TestClient[Any, Any]],
) -> None:
    _, client = api
    page = await client.get("/")
    assert page.status == 200 and "<title>Missions</title>" in await page.text()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for asset in ("js/app.js", "js/pages/mission.js", "style.css", "favicon.svg"):
        response = await client.get(f"/dashboard/{asset}")
        assert response.status == 200, asset
    assert (await client.get("/dashboard/../sessions.py")).status == 404
