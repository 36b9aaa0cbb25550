"""End to end: the missionctl script as a subprocess against the real service and worker."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from missions.v1 import mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Stack, eventually, payload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def missionctl_env(stack: Stack, server_variable: bool = True) -> dict[str, str]:
    """This machine's environment with no missionctl setting; MISSIONS_SERVER names ``stack``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MISSIONS_")}
    env["XDG_CONFIG_HOME"] = str(stack.directory / "xdg")
    if server_variable:
        env["MISSIONS_SERVER"] = stack.target
    return env


async def missionctl(stack: Stack, *argv: str, server_variable: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``missionctl ARGV...`` with no setting from this machine; MISSIONS_SERVER names ``stack``."""
    command = [sys.executable, "-m", "missions.ctl", *argv]
    env = missionctl_env(stack, server_variable)
    return await asyncio.to_thread(
        subprocess.run,
        command,
        env=env,
        stdin=subprocess.DEVNULL,  # never a terminal to ask at
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


async def test_submit_wait_jsonl_follows_the_mission_to_completed(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()

    done = await missionctl(stack, "submit", "echo", "--payload", '{"hello": "world"}', "--wait", "-o", "jsonl")

    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    # The submission's answer: QUEUED, or further along when the worker was quicker.
    assert list(lines[0]) == ["mission"]
    assert lines[0]["mission"]["state"] in ("MISSION_STATE_QUEUED", "MISSION_STATE_RUNNING", "MISSION_STATE_SUCCEEDED")
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


async def _dead_letters(stack: Stack, count: int) -> list[str]:
    """The ids of the dead letters, once there are ``count``."""
    listed: list[str] = []

    async def counted() -> bool:
        missions = (await stack.stub.ListDeadLetters(pb.ListDeadLettersRequest())).missions
        listed[:] = [mission.id for mission in missions]
        return len(listed) == count

    await eventually(counted, f"{count} dead letters", timeout=60)
    return listed


async def _final(stack: Stack, mission_id: str) -> mission_pb2.Mission:
    async with asyncio.timeout(60):
        async for _ in stack.stub.WatchEvents(pb.WatchEventsRequest(mission_ids=[mission_id])):
            pass  # the stream ends once the mission's current generation is final
    response: pb.GetMissionResponse = await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission_id))
    return response.mission


async def test_dead_letters_in_bulk_agree_with_stats_redrive_and_purge(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    # Two that fail their first attempt only, then one that fails every attempt, non-retryably.
    submitted = [
        (
            await stack.stub.SubmitMission(
                pb.SubmitMissionRequest(type="fail", payload=fields, max_attempts=1, labels={"team": team})
            )
        ).mission.id
        for fields, team in (
            (payload(fail_times=1), "a"),
            (payload(fail_times=1), "a"),
            (payload(retryable=False), "b"),
        )
    ]
    assert await _dead_letters(stack, 3) == submitted
    hopeless = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=submitted[2]))).mission

    stats = await missionctl(stack, "stats", "-o", "json")
    assert json.loads(stats.stdout)["dead_letter_depth"] == "3", stats.stderr
    dry = await missionctl(stack, "redrive-dead-letters", "--label", "team=a", "--dry-run", "-o", "json")
    assert json_lines(dry.stdout) == [{"count": "2", "mission_ids": submitted[:2], "dry_run": True}], dry.stderr
    unasked = await missionctl(stack, "redrive-dead-letters", "--label", "team=a")
    assert unasked.returncode == 2 and "add --yes" in unasked.stderr
    assert await _dead_letters(stack, 3) == submitted

    redriven = await missionctl(stack, "redrive-dead-letters", "--label", "team=a", "--max-attempts", "2", "--yes")
    assert redriven.returncode == 0, redriven.stderr
    assert redriven.stdout.splitlines()[0] == "2 dead letter(s) redriven:"
    for mission_id in submitted[:2]:
        mission = await _final(stack, mission_id)
        assert (mission.state, mission.attempt, mission.redrive_count) == (mission_pb2.MISSION_STATE_SUCCEEDED, 2, 1)

    purged = await missionctl(stack, "purge-dead-letters", "--error-type", hopeless.error.type, "--yes", "-o", "json")
    assert json_lines(purged.stdout) == [{"count": "1", "mission_ids": [submitted[2]], "dry_run": False}], purged.stderr
    listed = await missionctl(stack, "dead-letters", "-o", "json")
    assert json.loads(listed.stdout) == {}, listed.stderr
    stats = await missionctl(stack, "stats", "-o", "json")
    assert "dead_letter_depth" not in json.loads(stats.stdout)  # proto3 JSON leaves out a zero
    again = await missionctl(stack, "redrive", submitted[2])
    assert again.returncode == 3 + grpc.StatusCode.FAILED_PRECONDITION.value[0], again.stderr


async def _submit(stack: Stack, mission_type: str) -> str:
    response: pb.SubmitMissionResponse = await stack.stub.SubmitMission(pb.SubmitMissionRequest(type=mission_type))
    return response.mission.id


async def _succeeded(stack: Stack, count: int) -> None:
    async def done() -> bool:
        request = pb.ListMissionsRequest(states=[mission_pb2.MISSION_STATE_SUCCEEDED])
        return len((await stack.stub.ListMissions(request)).missions) == count

    await eventually(done, f"{count} missions succeeded")


async def test_list_newest_first_pages_from_the_most_recent_mission(stack: Stack) -> None:
    await stack.start_service()
    ids = [await _submit(stack, "echo") for _ in range(3)]

    done = await missionctl(stack, "list", "--newest-first", "--page-size", "2", "--all", "-o", "json")

    assert done.returncode == 0, done.stderr
    assert [found["id"] for found in json.loads(done.stdout)["missions"]] == ids[::-1]


async def test_watch_table_starts_with_the_unfinished_and_the_latest_missions_then_follows(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()
    finished = [await _submit(stack, "echo") for _ in range(3)]
    await _succeeded(stack, 3)
    waiting = await _submit(stack, "no-worker-handles-this")
    env = missionctl_env(stack) | {"TTY_COMPATIBLE": "1", "COLUMNS": "200", "LINES": "6"}  # 3 rows of missions
    watch = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "missions.ctl", "watch", env=env, stdout=asyncio.subprocess.PIPE
    )
    assert watch.stdout is not None
    stdout = watch.stdout
    out = ""

    async def frame(holds: Callable[[str], bool]) -> str:
        """Read the table's frames until one ``holds``; that frame."""
        nonlocal out
        async with asyncio.timeout(30):
            while True:
                # Each frame ends with its summary line, "N missions, M events ...".
                frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", out).split(" events")
                if found := next((text for text in frames if holds(text)), None):
                    return found
                chunk = await stdout.read(65536)
                assert chunk, f"missionctl watch ended: {out}"
                out += chunk.decode()

    try:
        # The one not final, then the two newest final ones: the room left on 3 rows.
        first = await frame(lambda text: "missions," in text)
        assert all(mission_id in first for mission_id in (waiting, finished[1], finished[2]))
        assert finished[0] not in first
        latest = await _submit(stack, "echo")
        await frame(lambda text: re.search(rf"{latest}\s+echo\s+SUCCEEDED", text) is not None)
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(watch.wait(), 30)
        finally:
            if watch.returncode is None:
                watch.kill()
    assert code == 0


async def test_schedule_commands_create_list_pause_resume_and_delete(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker()

    created = await missionctl(stack, "schedule", "create", "echo", "--every", "1", "--id", "beat", "-o", "json")
    assert created.returncode == 0, created.stderr
    schedule = json.loads(created.stdout)["schedule"]
    assert (schedule["id"], schedule["state"], schedule["interval"]) == ("beat", "SCHEDULE_STATE_ACTIVE", "1s")

    async def fired() -> bool:
        listed = await stack.stub.ListMissions(pb.ListMissionsRequest(label_selector="missions.schedule=beat"))
        return bool(listed.missions)

    await eventually(fired, "a mission of the schedule", timeout=60)
    listed = await missionctl(stack, "schedule", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:5] == ["beat", "ACTIVE", "every", "1s", "echo"]
    paused = await missionctl(stack, "schedule", "pause", "beat", "-o", "json")
    assert json.loads(paused.stdout)["schedule"]["state"] == "SCHEDULE_STATE_PAUSED", paused.stderr
    resumed = await missionctl(stack, "schedule", "resume", "beat")
    assert ["state", "ACTIVE"] in (line.split() for line in resumed.stdout.splitlines()), resumed.stderr
    deleted = await missionctl(stack, "schedule", "delete", "beat")
    assert deleted.returncode == 0, deleted.stderr
    gone = await missionctl(stack, "schedule", "get", "beat")
    assert gone.returncode == 3 + grpc.StatusCode.NOT_FOUND.value[0], gone.stderr
