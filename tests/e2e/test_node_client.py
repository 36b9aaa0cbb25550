"""End to end: the Node.js example client (examples/node) against the real service and worker.

It proves the contract is usable from another language with no generated code: the
client loads proto/ with @grpc/proto-loader, and what it prints is checked against what
the Python client reads from the same service.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pathlib
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from google.protobuf import json_format

from missions.v1 import events_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Stack, watch_events

pytestmark = pytest.mark.e2e

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "node"

# Every kind of google.protobuf.Value, nested; the echo handler returns it as the result.
PAYLOAD: dict[str, Any] = {
    "text": "grüße, 世界",
    "count": 42,
    "ratio": -0.125,
    "yes": True,
    "no": False,
    "nothing": None,
    "list": [1, "two", [3.5], {"four": None}],
    "nested": {"deeper": {"empty_list": [], "empty_struct": {}}},
}


def _node_command(*args: str) -> list[str]:
    """The client's command line; fails (never skips) when node or the npm packages are missing."""
    node = shutil.which("node")
    assert node is not None, "node is not on PATH"
    assert (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir(), (
        "examples/node/node_modules is missing: run `npm ci --prefix examples/node` (.ci/run does)"
    )
    return [node, str(EXAMPLE / "client.js"), *args]


@contextlib.asynccontextmanager
async def _started(command: list[str], token: str = "") -> AsyncIterator[asyncio.subprocess.Process]:
    """The client running (``token`` in MISSIONS_TOKEN); killed on the way out if it is still running."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MISSIONS_TOKEN": token},
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _records_until(
    process: asyncio.subprocess.Process, wanted: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The client's JSON lines up to and including the first that is ``wanted``."""
    assert process.stdout is not None
    records: list[dict[str, Any]] = []
    while not records or not wanted(records[-1]):
        line = await process.stdout.readline()
        assert line, f"the client ended before the line waited for; it printed {records}"
        records.append(json.loads(line))
    return records


async def _finish(process: asyncio.subprocess.Process, exit_code: int = 0) -> list[dict[str, Any]]:
    """The rest of the client's JSON lines, once it has exited with ``exit_code``."""
    stdout, stderr = await process.communicate()
    output = f"stdout:\n{stdout.decode()}\nstderr:\n{stderr.decode()}"
    assert process.returncode == exit_code, f"node client exited with {process.returncode}\n{output}"
    return [json.loads(line) for line in stdout.decode().splitlines()]


async def _run(command: list[str], token: str = "", exit_code: int = 0, timeout: float = 60) -> list[dict[str, Any]]:
    """Run the client to completion and return its JSON lines."""
    async with asyncio.timeout(timeout), _started(command, token) as process:
        return await _finish(process, exit_code)


def _only(records: list[dict[str, Any]], kind: str, stream: str | None = None) -> dict[str, Any]:
    matching = [r for r in records if r["kind"] == kind and (stream is None or r.get("stream") == stream)]
    assert len(matching) == 1, f"expected one {kind!r} record, got {matching}"
    return matching[0]


def _events(records: list[dict[str, Any]], stream: str) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "event" and r["stream"] == stream]


def _as_seen_by_node(event: events_pb2.MissionEvent) -> dict[str, Any]:
    """The fields the Node client prints for ``event``, from the Python client's copy."""
    return {
        "id": event.id,
        "sequence": str(event.sequence),
        "mission_id": event.mission_id,
        "type": events_pb2.EventType.Name(event.type),
        "details": event.WhichOneof("details"),
        "time": event.time.ToJsonString(),
        "attempt": event.attempt,
        "generation": event.generation,
        "correlation_id": event.correlation_id,
    }


def _common(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record[key] for key in _as_seen_by_node(events_pb2.MissionEvent())}


async def test_node_client_submits_watches_and_resumes(stack: Stack) -> None:
    key, correlation_id = f"node-{uuid.uuid4()}", f"corr-{uuid.uuid4()}"
    command = _node_command(
        *("--target", stack.target, "--key", key, "--correlation-id", correlation_id),
        *("--payload", json.dumps(PAYLOAD)),
    )
    await stack.start_service()
    stack.start_worker()
    records = await _run(command)

    # Submission: the Struct payload, labels, key and x-correlation-id arrived intact.
    submitted = _only(records, "submitted")["mission"]
    assert _only(records, "resubmitted")["mission"]["id"] == submitted["id"], "same key, same request: same mission"
    mission = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=submitted["id"]), timeout=10)).mission
    assert json_format.MessageToDict(mission.payload) == PAYLOAD == submitted["payload"]
    assert dict(mission.labels) == submitted["labels"] == {"client": "node", "example": "true"}
    assert mission.idempotency_key == submitted["idempotency_key"] == key
    assert mission.correlation_id == submitted["correlation_id"] == correlation_id
    assert submitted["create_time"] == mission.create_time.ToJsonString()

    # Snapshot then follow: CREATED..COMPLETED, the same events the Python client reads.
    async with asyncio.timeout(30):
        history = [e async for e in watch_events(stack.stub, pb.WatchEventsRequest(mission_ids=[mission.id]))]
    watched = _events(records, "watch")
    assert [e["type"] for e in watched] == ["EVENT_TYPE_CREATED", "EVENT_TYPE_STARTED", "EVENT_TYPE_COMPLETED"]
    assert [_common(e) for e in watched] == [_as_seen_by_node(e) for e in history]
    assert {e["correlation_id"] for e in watched} == {correlation_id}
    assert _only(records, "end", "watch") == {"kind": "end", "stream": "watch", "code": "OK", "events": 3}

    # The echo result round-tripped through Struct in both directions.
    completed = watched[-1]
    assert completed["result"] == PAYLOAD
    assert json_format.MessageToDict(history[-1].completed.result) == PAYLOAD
    assert completed["duration"] == history[-1].completed.duration.ToJsonString()

    # Resume after the first event's sequence: exactly the later events, in order.
    resumed = _events(records, "resume")
    end = _only(records, "end", "resume")
    assert end["code"] == "OK" and end["after_sequence"] == watched[0]["sequence"]
    assert [_common(e) for e in resumed] == [_common(e) for e in watched[1:]]
    assert all(int(e["sequence"]) > int(end["after_sequence"]) for e in resumed)
    assert not [r for r in records if r["kind"] in {"error", "resuming"}]


async def test_node_client_authenticates_with_a_bearer_token(stack: Stack, tmp_path: pathlib.Path) -> None:
    token = secrets.token_urlsafe(32)
    tokens = tmp_path / "tokens.toml"
    digest = hashlib.sha256(token.encode()).hexdigest()
    tokens.write_text(f'[tokens.{digest}]\nprincipal = "node-example"\nroles = ["submitter"]\n')
    command = _node_command("--target", stack.target)
    await stack.start_service("--tokens-file", str(tokens))
    stack.start_worker()

    refused = await _run(command, exit_code=1)
    assert [(r["kind"], r["code"]) for r in refused] == [("error", "UNAUTHENTICATED")]

    records = await _run(command, token=token)
    assert _only(records, "submitted")["mission"]["submitted_by"] == "node-example"
    assert [e["type"] for e in _events(records, "watch")][-1] == "EVENT_TYPE_COMPLETED"
    assert _only(records, "end", "watch")["code"] == _only(records, "end", "resume")["code"] == "OK"


async def test_node_client_resumes_its_watch_across_a_service_restart(stack: Stack) -> None:
    command = _node_command("--target", stack.target, "--type", "sleep", "--payload", json.dumps({"seconds": 2}))
    await stack.start_service()
    stack.start_worker()
    async with asyncio.timeout(90), _started(command) as process:
        before = await _records_until(process, lambda r: r.get("type") == "EVENT_TYPE_PROGRESS")
        assert stack.service is not None
        # SIGTERM: the service ends its streams with UNAVAILABLE and the last delivered sequence.
        assert await asyncio.to_thread(stack.service.stop) == 0
        await stack.start_service()
        records = before + await _finish(process)

    # Reopening may fail again while the old replica drains; each failure is printed.
    resumings = [r for r in records if r["kind"] == "resuming"]
    assert resumings and {r["code"] for r in resumings} == {"UNAVAILABLE"}
    delivered = [r for r in records[: records.index(resumings[0])] if r["kind"] == "event"]
    assert int(resumings[0]["after_sequence"]) >= int(delivered[-1]["sequence"])
    # Across the cut: every event once, in order, the same as a fresh reader sees.
    watched = _events(records, "watch")
    mission_id = watched[0]["mission_id"]
    async with asyncio.timeout(30):
        history = [e async for e in watch_events(stack.stub, pb.WatchEventsRequest(mission_ids=[mission_id]))]
    assert [_common(e) for e in watched] == [_as_seen_by_node(e) for e in history]
    assert [e["type"] for e in watched] == [
        "EVENT_TYPE_CREATED",
        "EVENT_TYPE_STARTED",
        *["EVENT_TYPE_PROGRESS"] * 10,
        "EVENT_TYPE_COMPLETED",
    ]
    assert watched[-1]["result"] == {"slept": 2}
    assert _only(records, "end", "watch")["code"] == "OK"
