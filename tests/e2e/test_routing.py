"""End to end: work routed by mission type, and a worker's concurrency bound."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Stack, drain, payload, watching

pytestmark = pytest.mark.e2e

E = events_pb2
M = mission_pb2
FAST = ("--heartbeat-interval", "0.5")
ROUTED = ("--handlers", "tests.e2e.routed_handlers")


async def _submit_many(stack: Stack, requests: list[pb.SubmitMissionRequest]) -> list[M.Mission]:
    response = await stack.stub.SubmitMissions(pb.SubmitMissionsRequest(missions=requests))
    assert all(result.HasField("mission") for result in response.results), response
    return [result.mission for result in response.results]


@pytest.mark.timeout(240)
async def test_two_workers_with_different_handlers_each_run_only_their_own_types(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker(*FAST)  # worker-0: the built-ins
    stack.start_worker(*FAST, *ROUTED)  # worker-1: resize and report only
    async with watching(stack.stub, pb.WatchEventsRequest(after_sequence=0)) as events:
        submitted = []
        for mission_type in ("echo", "resize"):
            requests = [pb.SubmitMissionRequest(type=mission_type, payload=payload(n=n)) for n in range(200)]
            submitted += await _submit_many(stack, requests)
        history = [event async for event in drain(events, [mission.id for mission in submitted], timeout=180)]

    runs_on = {"echo": "worker-0", "resize": "worker-1"}
    started = [event for event in history if event.type == E.EVENT_TYPE_STARTED]
    assert {(event.mission_type, event.started.worker_id) for event in started} == set(runs_on.items())
    assert len({event.mission_id for event in started}) == 400
    assert not [event for event in history if event.type == E.EVENT_TYPE_DEAD_LETTERED]
    for mission in submitted:
        got = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
        assert got.state == M.MISSION_STATE_SUCCEEDED, got


@pytest.mark.timeout(180)
async def test_a_type_no_live_worker_handles_stays_queued_until_one_comes(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker(*FAST)  # the built-ins only
    async with watching(stack.stub, pb.WatchEventsRequest(after_sequence=0)) as events:
        waiting, marker = await _submit_many(
            stack, [pb.SubmitMissionRequest(type="report"), pb.SubmitMissionRequest(type="echo")]
        )
        # The built-ins worker is consuming (it ran the marker) and left the report alone.
        async for _ in drain(events, [marker.id]):
            pass
        got = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=waiting.id))).mission
        assert got.state == M.MISSION_STATE_QUEUED
        stats = await stack.stub.GetStats(pb.GetStatsRequest())
        report = {entry.mission_type: entry for entry in stats.mission_types}["report"]
        assert (report.waiting, report.queue_depth, report.active_workers) == (1, 1, 0)

        stack.start_worker(*FAST, *ROUTED, "--types", "report")
        history = [event async for event in drain(events, [waiting.id])]
    assert [event.started.worker_id for event in history if event.type == E.EVENT_TYPE_STARTED] == ["worker-1"]
    assert history[-1].type == E.EVENT_TYPE_COMPLETED


@pytest.mark.timeout(240)
async def test_a_worker_runs_at_most_concurrency_attempts_and_a_queued_mission_cancels_unstarted(
    stack: Stack,
) -> None:
    await stack.start_service()
    async with watching(stack.stub, pb.WatchEventsRequest(after_sequence=0)) as events:
        busy = await _submit_many(
            stack, [pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=1)) for _ in range(30)]
        )
        [low] = await _submit_many(
            stack, [pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=1), priority=M.PRIORITY_LOW)]
        )
        stack.start_worker(*FAST, "--concurrency", "4")
        history, cancelled = [], False
        async for event in drain(events, [mission.id for mission in busy], timeout=180):
            history.append(event)
            if event.type == E.EVENT_TYPE_STARTED and not cancelled:
                # Queued behind 30 others, it is in the broker's queue, not yet the worker's.
                await stack.stub.CancelMission(pb.CancelMissionRequest(mission_id=low.id))
                cancelled = True
        final = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=low.id))).mission
    assert final.state == M.MISSION_STATE_CANCELLED

    # In log order: an attempt's STARTED is published once it has a slot, and its slot is
    # freed only after its outcome is confirmed, so the log never shows more than 4 running.
    running, most = set(), 0
    for event in history:
        if event.type == E.EVENT_TYPE_STARTED:
            running.add(event.mission_id)
            most = max(most, len(running))
        elif event.type in (E.EVENT_TYPE_COMPLETED, E.EVENT_TYPE_FAILED):
            running.discard(event.mission_id)
    assert most == 4
    assert low.id not in {event.mission_id for event in history if event.type == E.EVENT_TYPE_STARTED}
    assert sum(event.type == E.EVENT_TYPE_COMPLETED for event in history) == 30


def _worker_cli(directory: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The mission-worker console script, run from ``directory`` (no broker needed: these fail before connecting)."""
    script = pathlib.Path(sys.executable).with_name("mission-worker")
    return subprocess.run([str(script), *args], cwd=directory, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.timeout(120)
def test_the_console_script_imports_handlers_from_the_working_directory(tmp_path: pathlib.Path) -> None:
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "handlers.py").write_text(
        "from worker_service import handler\n\n\n@handler('thumbnail')\ndef thumbnail(ctx, payload):\n    return {}\n"
    )
    # An unknown --types entry stops it before it connects, listing what it loaded.
    loaded = _worker_cli(tmp_path, "--handlers", "mypkg.handlers", "--types", "nope")
    assert loaded.returncode == 2
    assert "loaded: thumbnail" in loaded.stderr, loaded.stderr

    missing = _worker_cli(tmp_path, "--handlers", "mypkg.nothere")
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert "mypkg.nothere" in missing.stderr
