"""End to end: the missionctl script as a subprocess against the real service and worker."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import grpc
import pytest

from missions.v1 import mission_service_pb2 as pb
from tests.support import Stack, eventually, payload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def missionctl(stack: Stack, *argv: str, server_variable: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``missionctl ARGV...`` with no setting from this machine; MISSIONS_SERVER names ``stack``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MISSIONS_")}
    env["XDG_CONFIG_HOME"] = str(stack.directory / "xdg")
    if server_variable:
        env["MISSIONS_SERVER"] = stack.target
    command = [sys.executable, "-m", "missions.ctl", *argv]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


async def test_submit_wait_jsonl_follows_the_mission_to_completed(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()

    done = await missionctl(stack, "submit", "echo", "--payload", '{"hello": "world"}', "--wait", "-o", "jsonl")

    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    assert list(lines[0]) == ["mission"] and lines[0]["mission"]["state"] == "MISSION_STATE_QUEUED"
    events = [line["event"] for line in lines if "event" in line]
    assert [event["type"] for event in events] == ["EVENT_TYPE_CREATED", "EVENT_TYPE_STARTED", "EVENT_TYPE_COMPLETED"]
    assert events[-1]["completed"]["result"] == {"hello": "world"}
    assert lines[-1]["mission"]["state"] == "MISSION_STATE_SUCCEEDED"


async def test_submit_wait_of_a_failing_mission_exits_non_zero(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()

    done = await missionctl(stack, "submit", "fail", "--max-attempts", "1", "--wait")

    assert done.returncode == 1, done.stderr
    assert "did not succeed: FAILED" in done.stderr
    assert "DEAD_LETTERED" in done.stdout


async def test_an_unknown_mission_exits_3_plus_not_found(stack: Stack) -> None:
    await stack.start_service()

    done = await missionctl(stack, "get", "no-such-mission")

    assert done.returncode == 3 + grpc.StatusCode.NOT_FOUND.value[0], done.stderr
    assert done.stderr.startswith("error: NOT_FOUND:")


async def test_get_takes_a_unique_id_prefix(stack: Stack) -> None:
    await stack.start_service()
    mission = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"))).mission

    done = await missionctl(stack, "get", mission.id[:8], "-o", "json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mission"]["id"] == mission.id


async def test_watch_plain_prints_a_mission_history_and_ends_when_it_is_final(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    request = pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=0.3))
    mission = (await stack.stub.SubmitMission(request)).mission

    done = await missionctl(stack, "watch", "--mission", mission.id, "--plain")

    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert all(line[2] == mission.id for line in lines)
    kinds = [line[3] for line in lines]
    assert kinds[:2] == ["CREATED", "STARTED"] and kinds[-1] == "COMPLETED"
    assert "PROGRESS" in kinds


async def test_top_once_json_shows_the_worker_and_the_counts(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker("--heartbeat-interval", "0.5")
    submitted = await missionctl(stack, "submit", "echo", "--wait", "-o", "json")
    assert submitted.returncode == 0, submitted.stderr

    async def listed() -> bool:
        return bool((await stack.stub.ListWorkers(pb.ListWorkersRequest())).workers)

    await eventually(listed, "the worker listed")

    done = await missionctl(stack, "top", "--once", "-o", "json")

    assert done.returncode == 0, done.stderr
    (frame,) = json_lines(done.stdout)
    assert frame["stats"]["states"] == [{"state": "MISSION_STATE_SUCCEEDED", "count": "1"}]
    assert [worker["id"] for worker in frame["workers"]] == ["worker-0"]
    assert frame["rates"]["events_per_s"] is None  # one sample: no rate yet


async def test_a_config_file_supplies_the_server(stack: Stack, tmp_path: pathlib.Path) -> None:
    await stack.start_service()
    config = tmp_path / "missionctl.toml"
    config.write_text(f'server = "{stack.target}"\noutput = "jsonl"\n')

    done = await missionctl(stack, "--config", str(config), "stats", server_variable=False)

    assert done.returncode == 0, done.stderr
    assert list(json_lines(done.stdout)[0]) == ["stats"]
