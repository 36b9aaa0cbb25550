"""Delayed missions through the servicer (fake broker): submitted SCHEDULED without a work
message, fired once by MissionCommands.fire, and the Scheduler that calls it while leading."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from mission_service.scheduler import Scheduler
from mission_service.store import MissionStore
from missions.errors import BrokerUnavailableError
from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.unit.factories import EventLog
from tests.unit.service_harness import TIMEOUT, Service, published_events, violated_fields

E = events_pb2
M = mission_pb2


def _in(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int((time.time() + seconds) * 1e9))
    return stamp


async def test_a_mission_due_later_is_scheduled_without_a_work_message(service: Service) -> None:
    mission = await service.submit(delay=duration_pb2.Duration(seconds=60))

    assert mission.state == M.MISSION_STATE_SCHEDULED
    assert mission.due_time.ToNanoseconds() - mission.create_time.ToNanoseconds() == 60 * 10**9
    got = await service.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id), timeout=TIMEOUT)
    assert got.mission == mission
    [created] = service.broker.log
    assert created.created.mission.state == M.MISSION_STATE_SCHEDULED
    assert service.broker.work == []
    listed = await service.stub.ListMissions(
        pb.ListMissionsRequest(states=[M.MISSION_STATE_SCHEDULED]), timeout=TIMEOUT
    )
    assert [listed.id for listed in listed.missions] == [mission.id]


async def test_a_due_time_in_the_past_queues_the_mission_at_once(service: Service) -> None:
    past = timestamp_pb2.Timestamp(seconds=1_000_000_000)
    mission = await service.submit(due_time=past)

    assert mission.state == M.MISSION_STATE_QUEUED
    assert mission.due_time == past
    [(work, _, _)] = service.broker.work
    assert work.type == E.EVENT_TYPE_CREATED


async def test_firing_logs_due_then_dispatches_the_created_work_message_once(service: Service) -> None:
    mission = await service.submit(due_time=_in(60), priority=M.PRIORITY_HIGH)

    await service.commands.fire(mission)
    await service.commands.fire(mission)  # a second replica, or a retry: a duplicate DUE

    _, first, second = service.broker.log
    assert [first.type, second.type] == [E.EVENT_TYPE_DUE, E.EVENT_TYPE_DUE]
    assert first.due.due_time == mission.due_time
    assert service.store.duplicates_after(0) == {second.sequence}
    [(work, priority, logged)] = service.broker.work
    # The work message is the mission's CREATED, which workers run as any other, after the DUE.
    assert (work.type, work.mission_id, priority, logged) == (E.EVENT_TYPE_CREATED, mission.id, M.PRIORITY_HIGH, 2)
    fired = service.store.get(mission.id)
    assert fired is not None
    assert fired.state == M.MISSION_STATE_QUEUED


async def test_a_scheduled_mission_can_be_cancelled_and_never_fires(service: Service) -> None:
    mission = await service.submit(delay=duration_pb2.Duration(seconds=60))
    await service.stub.CancelMission(pb.CancelMissionRequest(mission_id=mission.id), timeout=TIMEOUT)

    await service.commands.fire(mission)  # a scheduler that had read it before the cancel

    [cancelled] = published_events(service, E.EVENT_TYPE_CANCELLED)
    assert cancelled.cancelled.previous_state == M.MISSION_STATE_SCHEDULED
    assert service.broker.work == []
    assert service.store.next_due(after=0) is None


async def test_a_keyed_retry_with_the_same_delay_is_the_same_request(service: Service) -> None:
    fields = {"idempotency_key": "report-7", "delay": duration_pb2.Duration(seconds=60)}
    first = await service.submit(**fields)
    # The retry's clock has moved on: its delay counts from the mission's creation.
    assert (await service.submit(**fields)).id == first.id
    assert (await service.submit(idempotency_key="report-7", due_time=first.due_time)).id == first.id

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.submit(idempotency_key="report-7", delay=duration_pb2.Duration(seconds=61))
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "due_time" in (raised.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError):
        await service.submit(idempotency_key="report-7")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"delay": duration_pb2.Duration(seconds=-1)}, "delay"),
        ({"due_time": timestamp_pb2.Timestamp(seconds=int(time.time()) + 2 * 365 * 86_400)}, "due_time"),
    ],
)
async def test_a_bad_schedule_is_invalid_argument_naming_the_field(
    service: Service, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.submit(**fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == [field]
    batch = pb.SubmitMissionsRequest(missions=[pb.SubmitMissionRequest(type="echo", **fields)])
    [result] = (await service.stub.SubmitMissions(batch, timeout=TIMEOUT)).results
    assert result.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


class _Firings:
    """A fire function that records the missions it was given; ``failing`` raise instead, and
    while ``held`` is clear every firing waits for it."""

    def __init__(self) -> None:
        self.fired: list[str] = []
        self.failing: set[str] = set()
        self.any = asyncio.Event()
        self.held = asyncio.Event()
        self.held.set()

    async def __call__(self, mission: mission_pb2.Mission) -> None:
        await self.held.wait()
        if mission.id in self.failing:
            raise BrokerUnavailableError("broker away")
        self.fired.append(mission.id)
        self.any.set()


def _scheduled_store(*due_in: int) -> tuple[MissionStore, float]:
    """A store with missions m0, m1, ... due ``due_in`` seconds after their creation, and the
    creation time of the first."""
    store = MissionStore(":memory:")
    log = EventLog()
    for index, seconds in enumerate(due_in):
        log.scheduled(f"m{index}", due_in=seconds)
    store.apply_batch(log.events)
    return store, float(log.events[0].time.seconds)


async def _fire_due(scheduler: Scheduler[mission_pb2.Mission], now: float) -> None:
    await asyncio.gather(*scheduler.fire_due(now), return_exceptions=True)


async def test_the_scheduler_fires_what_is_due_earliest_first() -> None:
    store, start = _scheduled_store(30, 5, 10)
    firings = _Firings()
    scheduler = Scheduler(store.due, store.next_due, lambda: True, firings)

    await _fire_due(scheduler, start + 12)
    assert firings.fired == ["m1", "m2"]


async def test_a_mission_that_could_not_be_fired_is_tried_again_by_the_next_look() -> None:
    store, start = _scheduled_store(1, 1)
    firings = _Firings()
    firings.failing = {"m0"}
    scheduler = Scheduler(store.due, store.next_due, lambda: True, firings)

    await _fire_due(scheduler, start + 5)
    firings.failing.clear()
    await _fire_due(scheduler, start + 5)  # the fake fires without changing the store: both again
    assert firings.fired == ["m1", "m0", "m1"]


async def test_a_mission_being_fired_is_not_fired_again_meanwhile() -> None:
    store, start = _scheduled_store(1)
    firings = _Firings()
    firings.held.clear()
    scheduler = Scheduler(store.due, store.next_due, lambda: True, firings)

    [firing] = scheduler.fire_due(start + 5)
    assert scheduler.fire_due(start + 6) == []
    firings.held.set()
    await firing
    assert firings.fired == ["m0"]


async def test_the_scheduler_fires_only_while_this_replica_leads() -> None:
    store, start = _scheduled_store(1)
    firings = _Firings()
    leading = False
    asked = asyncio.Semaphore(0)

    def leads() -> bool:
        asked.release()
        return leading

    scheduler = Scheduler(store.due, store.next_due, leads, firings, clock=lambda: start + 5, max_sleep=0.01)
    running = asyncio.create_task(scheduler.run())
    try:
        for _ in range(3):  # three looks as a follower
            await asyncio.wait_for(asked.acquire(), TIMEOUT)
        assert firings.fired == []
        leading = True
        await asyncio.wait_for(firings.any.wait(), TIMEOUT)
        assert firings.fired[0] == "m0"
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        store.close()
