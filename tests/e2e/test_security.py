"""End to end: the real mission-service behind TLS, mTLS and bearer tokens (docs/security.md)."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from missions.client._connection import Connection
from missions.tls import TlsFiles
from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.e2e.secure import PRINCIPALS, SecureStack
from tests.e2e.secure_certs import Authority
from tests.support import eventually, payload

pytestmark = pytest.mark.e2e

E = events_pb2
M = mission_pb2
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture
async def secure(namespace: str, amqp_url: str, tmp_path: pathlib.Path) -> AsyncIterator[SecureStack]:
    async with SecureStack(namespace, amqp_url, tmp_path) as stack:
        yield stack


async def _code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await asyncio.wait_for(call, 15)
    return failure.value.code()


async def _first_watch_item(stream: Any) -> Any:
    async for item in stream:
        return item
    return None


async def _submit(stack: SecureStack, principal: str, mission_type: str = "echo") -> M.Mission:
    request = pb.SubmitMissionRequest(type=mission_type, payload=payload(text="hi"))
    mission: M.Mission = (await stack.stub_for().SubmitMission(request, metadata=stack.auth(principal))).mission
    return mission


async def test_tls_with_tokens_end_to_end(secure: SecureStack) -> None:
    await secure.start_service(*secure.service_args())
    secure.start_worker()
    stub = secure.stub_for()
    mission = await _submit(secure, "alice")
    assert mission.submitted_by == "alice"

    request = pb.WatchEventsRequest(mission_ids=[mission.id])
    async with asyncio.timeout(30):  # the stream ends with the mission's final event
        events = [item.event async for item in stub.WatchEvents(request, metadata=secure.auth("rita"))]
    assert [event.type for event in events] == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]
    got = await stub.GetMission(pb.GetMissionRequest(mission_id=mission.id), metadata=secure.auth("rita"))
    assert got.mission.state == M.MISSION_STATE_SUCCEEDED and got.mission.submitted_by == "alice"

    # Orchestrators probe health without a token; a plaintext client gets nothing at all.
    health = await health_pb2_grpc.HealthStub(secure.channel()).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    plaintext = secure.stub_for(secure.channel(plaintext=True))
    assert await _code_of(plaintext.GetStats(pb.GetStatsRequest(), metadata=secure.auth("ada"))) == (
        grpc.StatusCode.UNAVAILABLE
    )
    assert "TLS, bearer tokens" in secure.log()
    assert not [token for token in secure.tokens.values() if token in secure.log()]

    # The container probe needs the CA on a TLS port, and no token.
    assert (await asyncio.to_thread(_healthcheck, secure.target, "--tls-ca", str(secure.ca.cert))).returncode == 0
    assert (await asyncio.to_thread(_healthcheck, secure.target)).returncode == 1


def _healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mission_service.healthcheck", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def _reflection_code(stack: SecureStack, metadata: Any) -> grpc.StatusCode:
    """Reflection's code for ``metadata``, asking which services exist.

    Over a synchronous channel: a grpc.aio client sometimes reports a request stream the
    server ended early as INTERNAL instead of the server's status (grpc/grpc#36066).
    """
    files = TlsFiles(ca=stack.ca.cert)
    with Connection(files).channel(stack.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        try:
            for response in stub.ServerReflectionInfo(requests, metadata=metadata, timeout=15):
                names = [service.name for service in response.list_services_response.service]
                assert "missions.v1.MissionService" in names
        except grpc.RpcError as exc:
            return cast(grpc.Call, exc).code()
    return grpc.StatusCode.OK


async def test_missing_or_unknown_token_is_unauthenticated_on_every_kind_of_rpc(secure: SecureStack) -> None:
    await secure.start_service(*secure.service_args())
    stub = secure.stub_for()
    unknown = (("authorization", "Bearer not-a-token"),)
    for metadata in ((), unknown, (("authorization", "Basic YWxpY2U6cHc="),)):
        assert await _code_of(stub.GetStats(pb.GetStatsRequest(), metadata=metadata)) == UNAUTHENTICATED
        stream = stub.WatchEvents(pb.WatchEventsRequest(), metadata=metadata)
        assert await _code_of(_first_watch_item(stream)) == UNAUTHENTICATED
        assert await asyncio.to_thread(_reflection_code, secure, metadata) == UNAUTHENTICATED
    assert await asyncio.to_thread(_reflection_code, secure, secure.auth("rita")) == grpc.StatusCode.OK
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.GetStats(pb.GetStatsRequest(), metadata=unknown)
    assert failure.value.details() == "unknown bearer token"


async def test_roles_and_ownership_decide_what_a_principal_may_do(secure: SecureStack) -> None:
    await secure.start_service(*secure.service_args())
    stub = secure.stub_for()
    submit = pb.SubmitMissionRequest(type="echo")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.SubmitMission(submit, metadata=secure.auth("rita"))
    assert denied.value.code() == PERMISSION_DENIED
    assert "'rita'" in str(denied.value.details()) and "SubmitMission" in str(denied.value.details())
    assert await _code_of(stub.ListWorkers(pb.ListWorkersRequest(), metadata=secure.auth("alice"))) == (
        PERMISSION_DENIED
    )
    mission = await _submit(secure, "alice")  # no worker: it stays queued
    redrive = pb.RedriveMissionRequest(mission_id=mission.id)
    assert await _code_of(stub.RedriveMission(redrive, metadata=secure.auth("alice"))) == PERMISSION_DENIED

    cancel = pb.CancelMissionRequest(mission_id=mission.id, reason="mine")
    assert await _code_of(stub.CancelMission(cancel, metadata=secure.auth("bob"))) == PERMISSION_DENIED
    assert await _code_of(stub.CancelMission(cancel, metadata=secure.auth("rita"))) == PERMISSION_DENIED
    cancelled = (await stub.CancelMission(cancel, metadata=secure.auth("alice"))).mission
    assert cancelled.state == M.MISSION_STATE_CANCELLED
    others = await _submit(secure, "bob")
    by_admin = pb.CancelMissionRequest(mission_id=others.id)
    assert (await stub.CancelMission(by_admin, metadata=secure.auth("ada"))).mission.state == (
        M.MISSION_STATE_CANCELLED
    )

    history = pb.WatchEventsRequest(mission_ids=[mission.id, others.id], types=[E.EVENT_TYPE_CANCELLED])
    events = [item.event async for item in stub.WatchEvents(history, metadata=secure.auth("alice"))]
    assert {event.mission_id: event.cancelled.cancelled_by for event in events} == {
        mission.id: "alice",
        others.id: "ada",
    }


async def test_watch_streams_are_limited_per_principal(secure: SecureStack) -> None:
    # Idle streams get a heartbeat at once: the first item proves a stream was admitted.
    await secure.start_service(*secure.service_args(), "--max-watch-streams", "2", "--watch-heartbeat", "0.2")
    stub = secure.stub_for()
    live = pb.WatchEventsRequest()
    held = [stub.WatchEvents(live, metadata=secure.auth("alice")) for _ in range(2)]
    for call in held:
        assert (await asyncio.wait_for(_first_watch_item(call), 15)).HasField("heartbeat")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(_first_watch_item(stub.WatchEvents(live, metadata=secure.auth("alice"))), 15)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "2 WatchEvents streams" in str(refused.value.details())
    assert "--max-watch-streams" in str(refused.value.details())
    other = stub.WatchEvents(live, metadata=secure.auth("bob"))  # another principal has its own quota
    assert (await asyncio.wait_for(_first_watch_item(other), 15)).HasField("heartbeat")
    for call in (*held, other):
        call.cancel()


async def test_tokens_file_is_reloaded_on_sighup_and_a_bad_file_keeps_the_old_tokens(secure: SecureStack) -> None:
    service = await secure.start_service(*secure.service_args())
    stub = secure.stub_for()
    carol = "carol-token-" + secure.tokens["alice"][:8]

    async def carol_is_admin() -> bool:
        try:
            await stub.GetStats(pb.GetStatsRequest(), metadata=(("authorization", f"Bearer {carol}"),), timeout=10)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == UNAUTHENTICATED
            return False
        return True

    assert not await carol_is_admin()
    secure.write_tokens({**secure.tokens, "carol": carol}, {**PRINCIPALS, "carol": ["admin"]})
    assert service.popen is not None
    service.popen.send_signal(signal.SIGHUP)
    await eventually(carol_is_admin, "carol is admin after the reload", timeout=15)

    secure.tokens_file.write_text("this is not TOML [")
    service.popen.send_signal(signal.SIGHUP)

    async def complained() -> bool:
        return "not reloaded, keeping the previous 5 tokens" in service.output()

    await eventually(complained, "the bad tokens file logged", timeout=15)
    assert await carol_is_admin()
    assert service.popen.poll() is None


async def test_mtls_refuses_clients_without_a_certificate_or_with_one_from_another_ca(secure: SecureStack) -> None:
    await secure.start_service(*secure.service_args(mtls=True, tokens=False))
    trusted = secure.ca.issue("client", server=False)
    stranger = Authority("other", secure.directory).issue("client", server=False)
    good = secure.stub_for(secure.channel(client=trusted))
    # Without tokens, the verified certificate's common name is the principal.
    mission = (await good.SubmitMission(pb.SubmitMissionRequest(type="echo"), timeout=10)).mission
    assert mission.submitted_by == "client"
    for client in (None, stranger):
        stub = secure.stub_for(secure.channel(client=client))
        assert await _code_of(stub.GetStats(pb.GetStatsRequest())) == grpc.StatusCode.UNAVAILABLE
    assert "mTLS, client certificates" in secure.log()


def _missionctl(secure: SecureStack, *argv: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MISSIONS_SERVER": secure.target, "MISSIONS_TLS_CA": str(secure.ca.cert)}
    env.pop("MISSIONS_TOKEN", None)
    if token is not None:
        env["MISSIONS_TOKEN"] = token
    command = [sys.executable, "-m", "missions.ctl", "-o", "json", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_missionctl_with_tls_and_a_token(secure: SecureStack) -> None:
    await secure.start_service(*secure.service_args())
    secure.start_worker()
    token_file = secure.directory / "alice.token"
    token_file.write_text(secure.tokens["alice"] + "\n")
    done = await asyncio.to_thread(
        _missionctl, secure, "submit", "echo", "--wait", "--token-file", str(token_file), token=None
    )
    assert done.returncode == 0, done.stderr
    mission_id = json.loads(done.stdout.splitlines()[0])["mission"]["id"]
    got = await asyncio.to_thread(_missionctl, secure, "get", mission_id, token=secure.tokens["rita"])
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["mission"]["submitted_by"] == "alice"
    refused = await asyncio.to_thread(_missionctl, secure, "stats", token=None)
    assert refused.returncode == 3 + UNAUTHENTICATED.value[0], refused.stderr
    assert "UNAUTHENTICATED" in refused.stderr
