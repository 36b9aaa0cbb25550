"""End to end: cancellation, lost workers, poison missions, redrive, workers and stats."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any

import grpc
import pytest

from missions.v1 import events_pb2, mission_pb2, worker_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Process, Stack, eventually, payload, watch_events

pytestmark = pytest.mark.e2e

E = events_pb2
M = mission_pb2
FAST = ("--heartbeat-interval", "0.5", "--retry-base", "0.05", "--retry-max", "0.1")


async def _history(stack: Stack, mission_id: str) -> list[events_pb2.MissionEvent]:
    """Every event of one mission, from its first; returns when the mission is final."""
    return [event async for event in watch_events(stack.stub, pb.WatchEventsRequest(mission_ids=[mission_id]))]


async def _first(stack: Stack, mission_id: str, kind: events_pb2.EventType.ValueType) -> events_pb2.MissionEvent:
    request = pb.WatchEventsRequest(mission_ids=[mission_id], types=[kind])
    async for event in watch_events(stack.stub, request):
        return event
    raise AssertionError(f"mission {mission_id} ended without {E.EventType.Name(kind)}")


async def _submit(
    stack: Stack, mission_type: str, payload_values: dict[str, Any] | None = None, **fields: Any
) -> M.Mission:
    request = pb.SubmitMissionRequest(type=mission_type, payload=payload(**(payload_values or {})), **fields)
    mission: M.Mission = (await stack.stub.SubmitMission(request)).mission
    return mission


async def test_cancelled_queued_mission_never_starts_even_across_worker_restarts(stack: Stack) -> None:
    await stack.start_service()
    queued = await _submit(stack, "echo")
    response = await stack.stub.CancelMission(pb.CancelMissionRequest(mission_id=queued.id, reason="changed my mind"))
    assert response.mission.state == M.MISSION_STATE_CANCELLED
    again = await stack.stub.CancelMission(pb.CancelMissionRequest(mission_id=queued.id))
    assert again.mission == response.mission

    # A worker that starts only now still learns of the cancellation from the control stream.
    first = stack.start_worker(*FAST)
    marker = await _submit(stack, "echo")
    await _history(stack, marker.id)  # the worker has consumed past the cancelled mission
    assert first.stop() == 0
    stack.start_worker(*FAST)
    second_marker = await _submit(stack, "echo")
    await _history(stack, second_marker.id)

    events = await _history(stack, queued.id)
    assert [event.type for event in events] == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_CANCELLED]
    assert events[1].cancelled.reason == "changed my mind"
    assert events[1].cancelled.cancelled_by
    assert events[1].cancelled.previous_state == M.MISSION_STATE_QUEUED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.CancelMission(pb.CancelMissionRequest(mission_id=marker.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_retried_submission_dispatches_a_queued_mission_again_and_it_still_runs_once(stack: Stack) -> None:
    """The recovery for a replica that died between CREATED and the work message: the copy
    a retry sends is dropped by the worker once the first has started."""
    await stack.start_service()
    first = await _submit(stack, "echo", idempotency_key="order-42")
    again = await _submit(stack, "echo", idempotency_key="order-42")
    assert again.id == first.id
    stats = await stack.stub.GetStats(pb.GetStatsRequest())
    assert (stats.queue_depth, stats.events_read) == (2, 1)  # two work messages, one CREATED

    stack.start_worker("--concurrency", "1")  # takes the copies one after the other
    await _history(stack, first.id)
    # The copy is ahead of this marker in the queue, so it has been consumed once the marker ran.
    marker = await _submit(stack, "echo")
    log: list[events_pb2.MissionEvent] = []
    async for event in watch_events(stack.stub, pb.WatchEventsRequest(after_sequence=0)):
        log.append(event)
        if event.mission_id == marker.id and event.type == E.EVENT_TYPE_COMPLETED:
            break
    kinds = [event.type for event in log if event.mission_id == first.id]
    assert kinds == [E.EVENT_TYPE_CREATED, E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]
    assert (await stack.stub.GetStats(pb.GetStatsRequest())).queue_depth == 0


@pytest.mark.parametrize("mission_type", ["sleep", "stubborn"])
async def test_cancelling_a_running_mission_stops_it_within_the_grace(stack: Stack, mission_type: str) -> None:
    await stack.start_service()
    stack.start_worker(*FAST, "--cancel-grace", "1", "--handlers", "builtin,tests.e2e.handlers")
    mission = await _submit(stack, mission_type, {"seconds": 60})
    await _first(stack, mission.id, E.EVENT_TYPE_STARTED)
    asked = time.monotonic()
    response = await stack.stub.CancelMission(pb.CancelMissionRequest(mission_id=mission.id, reason="stop"))
    assert response.mission.state == M.MISSION_STATE_CANCELLED
    events = await _history(stack, mission.id)
    assert [event.type for event in events].count(E.EVENT_TYPE_CANCELLED) == 1
    assert not {E.EVENT_TYPE_COMPLETED, E.EVENT_TYPE_FAILED} & {event.type for event in events}
    # The worker is free again: the next mission runs, so the cancelled one is no longer holding it.
    follow_up = await _submit(stack, "echo")
    await _history(stack, follow_up.id)
    assert time.monotonic() - asked < 30  # not the 60 s the handler asked for


async def test_worker_killed_mid_mission_is_recovered_on_another_worker(stack: Stack) -> None:
    await stack.start_service("--reap-interval", "0.2")
    victim = stack.start_worker(*FAST)
    mission = await _submit(stack, "sleep", {"seconds": 2})
    started = await _first(stack, mission.id, E.EVENT_TYPE_STARTED)
    assert started.started.worker_id == "worker-0"
    victim.stop(signal.SIGKILL)
    stack.start_worker(*FAST)
    events = await _history(stack, mission.id)
    kinds = [event.type for event in events]
    assert kinds.count(E.EVENT_TYPE_COMPLETED) == 1 and kinds[-1] == E.EVENT_TYPE_COMPLETED
    lost = [event for event in events if event.type == E.EVENT_TYPE_FAILED]
    assert [event.failed.error.type for event in lost] == ["WorkerLost"]
    assert events[-1].attempt == 2
    final = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
    assert final.state == M.MISSION_STATE_SUCCEEDED and final.worker_id == "worker-1"


async def test_poison_mission_is_dead_lettered_and_others_keep_flowing(stack: Stack) -> None:
    await stack.start_service("--reap-interval", "0.2")
    workers = [stack.start_worker(*FAST, "--handlers", "builtin,tests.e2e.handlers") for _ in range(2)]
    poison = await _submit(stack, "crash", max_attempts=2)
    healthy = [await _submit(stack, "echo", {"n": n}) for n in range(10)]
    # Each crash takes a worker down; replace it as a supervisor would.
    for _ in range(2):
        crashed = await _any_exit(workers)
        workers.remove(crashed)
        workers.append(stack.start_worker(*FAST, "--handlers", "builtin,tests.e2e.handlers"))
    events = await _history(stack, poison.id)
    assert events[-1].type == E.EVENT_TYPE_DEAD_LETTERED
    assert [event.failed.error.type for event in events if event.type == E.EVENT_TYPE_FAILED] == ["WorkerLost"] * 2
    for mission in healthy:
        assert (await _history(stack, mission.id))[-1].type == E.EVENT_TYPE_COMPLETED
    dead = await stack.stub.ListDeadLetters(pb.ListDeadLettersRequest())
    assert [mission.id for mission in dead.missions] == [poison.id]


async def _any_exit(processes: list[Process]) -> Process:
    """The first of ``processes`` to exit."""
    waits = {asyncio.ensure_future(asyncio.to_thread(p.popen.wait)): p for p in processes if p.popen}
    done, pending = await asyncio.wait(waits, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    assert done, "no worker crashed"
    for waiting in pending:
        waiting.cancel()  # the threads end when their process does (at the latest at teardown)
    return waits[done.pop()]


async def test_redrive_runs_a_dead_lettered_mission_again(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker(*FAST)
    mission = await _submit(stack, "fail", {"fail_times": 2}, max_attempts=1)
    assert (await _history(stack, mission.id))[-1].type == E.EVENT_TYPE_DEAD_LETTERED
    dead = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
    assert dead.dead_lettered and dead.state == M.MISSION_STATE_FAILED

    response = await stack.stub.RedriveMission(pb.RedriveMissionRequest(mission_id=mission.id, max_attempts=3))
    # QUEUED again, or already RUNNING: the worker may be quicker than the reply.
    assert response.mission.redrive_count == 1 and not response.mission.dead_lettered
    assert response.mission.state in (M.MISSION_STATE_QUEUED, M.MISSION_STATE_RUNNING, M.MISSION_STATE_RETRYING)
    request = pb.WatchEventsRequest(mission_ids=[mission.id], after_sequence=dead.last_sequence)
    events = [event async for event in watch_events(stack.stub, request)]
    assert events[0].type == E.EVENT_TYPE_REDRIVEN and events[-1].type == E.EVENT_TYPE_COMPLETED
    final = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id))).mission
    # fail_times=2 counts attempts of the new generation: 1 and 2 fail, 3 succeeds.
    assert final.state == M.MISSION_STATE_SUCCEEDED and final.attempt == 3 and not final.dead_lettered
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.RedriveMission(pb.RedriveMissionRequest(mission_id=mission.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_workers_and_stats_reflect_the_fleet(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker(*FAST, "--concurrency", "3")
    mission = await _submit(stack, "echo")
    await _history(stack, mission.id)
    workers: list[worker_pb2.Worker] = []

    async def listed_with_the_mission_finished() -> bool:  # heartbeats arrive every 0.5 s
        workers[:] = (await stack.stub.ListWorkers(pb.ListWorkersRequest())).workers
        return bool(workers) and workers[0].finished >= 1

    await eventually(listed_with_the_mission_finished, "the worker listed with its mission finished", interval=0.2)
    (worker,) = workers
    assert worker.id == "worker-0" and worker.concurrency == 3 and worker.state == worker_pb2.WORKER_STATE_ACTIVE
    assert {"echo", "fail", "noop", "sleep"} <= set(worker.handler_types)
    stats = await stack.stub.GetStats(pb.GetStatsRequest())
    assert {count.state: count.count for count in stats.states} == {M.MISSION_STATE_SUCCEEDED: 1}
    assert stats.succeeded_last_hour == 1 and stats.active_workers == 1 and stats.queue_depth == 0


async def test_long_mission_outlives_the_brokers_ack_timeout(stack: Stack) -> None:
    """RabbitMQ closes a channel holding an unacked delivery past consumer_timeout (checked
    once a minute); the worker acks at STARTED, so a mission may run for hours."""
    original = _consumer_timeout()
    _set_consumer_timeout("1000")
    try:
        await stack.start_service()
        # Heartbeats at the default pace: a worker starved of CPU for 1.5 s on a loaded machine
        # must not be taken for lost, which would fail the attempt for another reason.
        stack.start_worker("--heartbeat-interval", "5")
        mission = await _submit(stack, "sleep", {"seconds": 70})
        events = await _history(stack, mission.id)
    finally:
        _set_consumer_timeout(original)
    failures = [event.failed.error for event in events if event.type == E.EVENT_TYPE_FAILED]
    assert [event.type for event in events if event.type != E.EVENT_TYPE_PROGRESS] == [
        E.EVENT_TYPE_CREATED,
        E.EVENT_TYPE_STARTED,
        E.EVENT_TYPE_COMPLETED,
    ], failures


def _consumer_timeout() -> str:
    out = subprocess.run(
        ["rabbitmqctl", "eval", "application:get_env(rabbit, consumer_timeout)."],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out.removeprefix("{ok,").removesuffix("}") if out.startswith("{ok,") else "undefined"


def _set_consumer_timeout(value: str) -> None:
    command = (
        "application:unset_env(rabbit, consumer_timeout)."
        if value == "undefined"
        else f"application:set_env(rabbit, consumer_timeout, {value})."
    )
    subprocess.run(["rabbitmqctl", "eval", command], check=True, capture_output=True)


async def test_service_killed_mid_run_catches_up_without_loss_or_duplicates(stack: Stack) -> None:
    await stack.start_service()
    stack.start_worker(*FAST, "--concurrency", "4")
    missions = [await _submit(stack, "sleep", {"seconds": 0.3}) for _ in range(12)]
    await _first(stack, missions[0].id, E.EVENT_TYPE_STARTED)
    assert stack.service is not None
    stack.service.stop(signal.SIGKILL)
    await stack.start_service()
    for mission in missions:
        assert (await _history(stack, mission.id))[-1].type == E.EVENT_TYPE_COMPLETED
    listed = (await stack.stub.ListMissions(pb.ListMissionsRequest(page_size=100))).missions
    assert sorted(mission.id for mission in listed) == sorted(mission.id for mission in missions)
    assert all(mission.state == M.MISSION_STATE_SUCCEEDED for mission in listed)


async def test_sigterm_past_the_drain_timeout_hands_the_rest_to_another_worker(stack: Stack) -> None:
    await stack.start_service()
    leaving = stack.start_worker(*FAST, "--concurrency", "3", "--drain-timeout", "0.5", "--cancel-grace", "0.5")
    quick = await _submit(stack, "sleep", {"seconds": 0.2})
    slow = [await _submit(stack, "sleep", {"seconds": 5}) for _ in range(2)]
    for mission in (quick, *slow):
        await _first(stack, mission.id, E.EVENT_TYPE_STARTED)
    assert await asyncio.to_thread(leaving.stop) == 0
    stack.start_worker(*FAST)
    quick_events = await _history(stack, quick.id)
    assert [event.type for event in quick_events].count(E.EVENT_TYPE_COMPLETED) == 1
    for mission in slow:
        events = await _history(stack, mission.id)
        kinds = [event.type for event in events]
        assert kinds.count(E.EVENT_TYPE_COMPLETED) == 1 and kinds[-1] == E.EVENT_TYPE_COMPLETED
        interrupted = [event.failed.error.type for event in events if event.type == E.EVENT_TYPE_FAILED]
        assert interrupted == ["Interrupted"]
        assert events[-1].attempt == 2
