"""Attempts: the handler runs only for the first STARTED of an attempt the control stream shows."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from missions.events import new_event
from missions.outbox import Outbox
from missions.v1 import events_pb2, mission_pb2
from worker_service.attempt import Attempts
from worker_service.context import MissionContext
from worker_service.handlers.registry import HandlerRegistry
from worker_service.ledger import MissionLedger
from worker_service.metrics import WorkerMetrics
from worker_service.settings import WorkerSettings

E = events_pb2
M = mission_pb2

TIMEOUT = 5.0


class ControlStream:
    """The outbox of one worker, and the control stream as it reads back: each STARTED it
    publishes reaches the ledger after the rival STARTED that ``ahead`` says came first."""

    def __init__(self, ledger: MissionLedger) -> None:
        self.ledger = ledger
        self.ahead: list[events_pb2.MissionEvent] = []
        self.published: list[events_pb2.MissionEvent] = []

    async def publish_once(self, event: events_pb2.MissionEvent, priority: int | None = None) -> None:
        self.published.append(event)
        loop = asyncio.get_running_loop()
        for earlier in [*self.ahead, event]:  # read back a moment later, in stream order
            loop.call_soon(self.ledger.observe, earlier)

    async def publish(self, event: events_pb2.MissionEvent, **_: Any) -> bool:
        await self.publish_once(event)
        return True


def _mission() -> M.Mission:
    return M.Mission(id="m1", type="echo", state=M.MISSION_STATE_QUEUED, max_attempts=3, attempt=1)


def _rival_started(mission: M.Mission) -> events_pb2.MissionEvent:
    started = new_event(mission, E.EVENT_TYPE_STARTED, source="worker-2", correlation_id="c")
    started.started.worker_id = "worker-2"
    started.started.worker_session = "theirs"
    return started


@pytest.fixture
def ran() -> list[str]:
    return []


@pytest.fixture
def attempts(ran: list[str]) -> tuple[Attempts, ControlStream]:
    async def echo(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        ran.append(ctx.mission_id)
        return {}

    registry = HandlerRegistry()
    registry.register("echo", echo)
    ledger = MissionLedger()
    stream = ControlStream(ledger)
    settings = WorkerSettings(amqp_url="", namespace="unit", worker_id="worker-1")
    outbox = cast(Outbox, stream)
    return Attempts(settings, outbox, registry, ledger, "mine", WorkerMetrics()), stream


async def _run(attempts: Attempts, mission: M.Mission) -> tuple[object, list[str]]:
    acked: list[str] = []

    async def started() -> None:
        acked.append(mission.id)

    work = new_event(mission, E.EVENT_TYPE_CREATED, source="service", correlation_id="c")
    outcome = await asyncio.wait_for(attempts.run(mission, work, started), TIMEOUT)
    return outcome, acked


async def test_the_first_started_in_the_control_stream_runs_the_handler(
    attempts: tuple[Attempts, ControlStream], ran: list[str]
) -> None:
    runner, stream = attempts
    outcome, acked = await _run(runner, _mission())
    assert outcome is not None and ran == ["m1"] and acked == ["m1"]
    assert [event.type for event in stream.published] == [E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]


async def test_a_started_that_comes_second_withdraws_and_never_runs_the_handler(
    attempts: tuple[Attempts, ControlStream], ran: list[str]
) -> None:
    runner, stream = attempts
    mission = _mission()
    stream.ahead.append(_rival_started(mission))  # a copy of the work message started elsewhere
    outcome, acked = await _run(runner, mission)
    assert outcome is None and ran == []
    assert acked == ["m1"]  # its delivery is settled: the log owns the attempt now
    started, withdrawal = stream.published
    assert (started.type, started.started.withdrawn) == (E.EVENT_TYPE_STARTED, False)
    assert (withdrawal.type, withdrawal.started.withdrawn) == (E.EVENT_TYPE_STARTED, True)
    assert (withdrawal.attempt, withdrawal.started.worker_session) == (1, "mine")
    assert withdrawal.id != started.id
