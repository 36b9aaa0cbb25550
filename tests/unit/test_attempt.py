"""Attempts: the handler runs only when the log, through the service's answer, says this
worker's STARTED came first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from mission_service.start_verdicts import StartVerdictSender
from mission_service.store import MissionStore
from missions import codec
from missions.errors import BrokerUnavailableError
from missions.events import new_event
from missions.retrying_publisher import RetryingPublisher
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from worker_service.attempt import Attempts
from worker_service.context import MissionContext
from worker_service.handlers.registry import HandlerRegistry
from worker_service.ledger import MissionLedger
from worker_service.metrics import WorkerMetrics
from worker_service.settings import WorkerSettings
from worker_service.verdicts import Verdicts

E = events_pb2
M = mission_pb2

TIMEOUT = 5.0


class Service:
    """One worker's retrying publisher, the log behind it, and a service replica that answers: every
    event published is appended to the log (after the ones in ``ahead``) and applied to a
    real MissionStore, whose verdicts on STARTED reach the worker's Verdicts a moment later,
    unless ``answers_lost`` says to drop them."""

    def __init__(self, verdicts: Verdicts) -> None:
        self.verdicts = verdicts
        self.ledger = MissionLedger()  # the worker's
        self.store = MissionStore(":memory:")
        self.ahead: list[events_pb2.MissionEvent] = []
        self.published: list[events_pb2.MissionEvent] = []
        self.answers_lost = 0
        self.confirms_lost = 0  # publishes that reach the log but raise as if unconfirmed
        self.away = False  # the broker takes nothing
        self.retried = asyncio.Event()  # set once a publish was not confirmed
        self.asked_again = asyncio.Event()  # set once a session published a second STARTED
        self._records = 0

    def append(self, *events: events_pb2.MissionEvent) -> None:
        """Put ``events`` in the log and apply them, answering the STARTED among them."""
        sender = StartVerdictSender(cast(Any, None), Topology("unit"))
        for event in events:
            self._records += 1
            event.sequence = codec.sequence_at(self._records, 0)
            self.store.apply_batch([event], sender.hear)
        answers = worker_pb2.StartVerdicts()
        for verdicts in sender.take().values():
            answers.MergeFrom(verdicts)
        if not answers.run and not answers.refused:
            return
        if self.answers_lost:
            self.answers_lost -= 1
            return
        asyncio.get_running_loop().call_soon(self.verdicts.hear, answers)

    async def publish_once(self, event: events_pb2.MissionEvent, priority: int | None = None) -> None:
        if self.away:
            raise BrokerUnavailableError("the broker is away")
        if event.type == E.EVENT_TYPE_STARTED and any(e.type == E.EVENT_TYPE_STARTED for e in self.published):
            self.asked_again.set()
        self.published.append(event)
        self.append(*self.ahead, event)
        self.ahead.clear()
        if self.confirms_lost:
            self.confirms_lost -= 1
            raise BrokerUnavailableError("the confirm was lost")

    async def publish(
        self, event: events_pb2.MissionEvent, *, wanted: Callable[[], Awaitable[bool]] | None = None, **_: Any
    ) -> bool:
        """Retried until confirmed, or no longer ``wanted``, as RetryingPublisher.publish does."""
        while True:
            try:
                await self.publish_once(event)
                return True
            except BrokerUnavailableError:
                self.retried.set()
                await asyncio.sleep(0)
            if wanted is not None and not await wanted():
                return False


def _mission() -> M.Mission:
    return M.Mission(id="m1", type="echo", state=M.MISSION_STATE_QUEUED, max_attempts=3, attempt=1)


def _created(mission: M.Mission) -> events_pb2.MissionEvent:
    created = new_event(mission, E.EVENT_TYPE_CREATED, source="service", correlation_id="c")
    created.created.mission.CopyFrom(mission)
    created.created.mission.attempt = 0
    return created


def _rival_started(mission: M.Mission) -> events_pb2.MissionEvent:
    started = new_event(mission, E.EVENT_TYPE_STARTED, source="worker-2", correlation_id="c")
    started.started.worker_id = "worker-2"
    started.started.worker_session = "theirs"
    return started


@pytest.fixture
def ran() -> list[str]:
    return []


@pytest.fixture
def attempts(ran: list[str]) -> tuple[Attempts, Service]:
    async def echo(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        ran.append(ctx.mission_id)
        return {}

    registry = HandlerRegistry()
    registry.register("echo", echo)
    verdicts = Verdicts(Topology("unit"), "mine", ask_again_after=0.05)
    service = Service(verdicts)
    settings = WorkerSettings(amqp_url="", namespace="unit", worker_id="worker-1")
    retrying = cast(RetryingPublisher, service)
    return Attempts(settings, retrying, registry, service.ledger, verdicts, "mine", WorkerMetrics()), service


async def _run(attempts: Attempts, service: Service, mission: M.Mission) -> tuple[object, list[str]]:
    acked: list[str] = []

    async def started() -> None:
        acked.append(mission.id)

    work = _created(mission)
    service.append(work)
    outcome = await asyncio.wait_for(attempts.run(mission, work, started), TIMEOUT)
    return outcome, acked


async def _waiting_for_an_answer(
    runner: Attempts, service: Service, mission: M.Mission
) -> asyncio.Task[tuple[object, list[str]]]:
    """The attempt of ``mission`` running, with no replica answering, once it has asked again."""
    service.answers_lost = 1_000_000
    running = asyncio.create_task(_run(runner, service, mission))
    async with asyncio.timeout(TIMEOUT):
        await service.asked_again.wait()
    return running


async def test_the_first_started_in_the_log_runs_the_handler(
    attempts: tuple[Attempts, Service], ran: list[str]
) -> None:
    runner, service = attempts
    outcome, acked = await _run(runner, service, _mission())
    assert outcome is not None and ran == ["m1"] and acked == ["m1"]
    assert [event.type for event in service.published] == [E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]
    stored = service.store.get("m1")
    assert stored is not None and stored.state == M.MISSION_STATE_SUCCEEDED


async def test_a_started_that_comes_second_withdraws_and_never_runs_the_handler(
    attempts: tuple[Attempts, Service], ran: list[str]
) -> None:
    runner, service = attempts
    mission = _mission()
    service.ahead.append(_rival_started(mission))  # a copy of the work message started elsewhere
    outcome, acked = await _run(runner, service, mission)
    assert outcome is None and ran == []
    assert acked == ["m1"]  # its delivery is settled: the log owns the attempt now
    started, withdrawal = service.published
    assert (started.type, started.started.withdrawn) == (E.EVENT_TYPE_STARTED, False)
    assert (withdrawal.type, withdrawal.started.withdrawn) == (E.EVENT_TYPE_STARTED, True)
    assert (withdrawal.attempt, withdrawal.started.worker_session) == (1, "mine")
    assert withdrawal.id != started.id
    stored = service.store.get("m1")
    assert stored is not None and stored.worker_session == "theirs"


async def test_a_mission_cancelled_before_its_started_reached_the_log_never_runs(
    attempts: tuple[Attempts, Service], ran: list[str]
) -> None:
    runner, service = attempts
    mission = _mission()
    cancelled = new_event(mission, E.EVENT_TYPE_CANCELLED, source="service", correlation_id="c")
    cancelled.cancelled.previous_state = M.MISSION_STATE_QUEUED
    service.ahead.append(cancelled)  # the worker's ledger has not read it yet
    outcome, _ = await _run(runner, service, mission)
    assert outcome is None and ran == []
    assert [event.started.withdrawn for event in service.published] == [False, True]


async def test_a_lost_answer_is_asked_for_again_and_the_attempt_runs_once(
    attempts: tuple[Attempts, Service], ran: list[str]
) -> None:
    runner, service = attempts
    service.answers_lost = 2
    outcome, _ = await _run(runner, service, _mission())
    assert outcome is not None and ran == ["m1"]
    started = [event for event in service.published if event.type == E.EVENT_TYPE_STARTED]
    assert len(started) == 3 and len({event.id for event in started}) == 3
    assert {(event.attempt, event.started.worker_session) for event in started} == {(1, "mine")}
    # The STARTED asked again are duplicates in the log: the mission shows the first one.
    assert service.store.duplicates_after(0) == {event.sequence for event in started[1:]}


async def test_claiming_an_attempt_a_rival_runs_withdraws_and_leaves_it_alone(
    attempts: tuple[Attempts, Service], ran: list[str]
) -> None:
    """An unreadable copy of a work message must not end a mission another worker runs."""
    runner, service = attempts
    mission = _mission()
    service.append(_created(mission), _rival_started(mission))
    assert not await asyncio.wait_for(runner.claim(mission, "c"), TIMEOUT)
    assert [event.started.withdrawn for event in service.published] == [False, True]
    stored = service.store.get("m1")
    assert stored is not None and (stored.state, stored.worker_session) == (M.MISSION_STATE_RUNNING, "theirs")
    assert ran == []


async def test_claiming_an_attempt_nobody_started_gives_it_to_this_worker(attempts: tuple[Attempts, Service]) -> None:
    runner, service = attempts
    mission = _mission()
    service.append(_created(mission))
    assert await asyncio.wait_for(runner.claim(mission, "c"), TIMEOUT)
    stored = service.store.get("m1")
    assert stored is not None and (stored.state, stored.worker_session) == (M.MISSION_STATE_RUNNING, "mine")


async def test_an_attempt_waiting_for_the_service_stops_waiting_when_the_worker_is_interrupted(
    attempts: tuple[Attempts, Service], ran: list[str]
) -> None:
    runner, service = attempts
    running = await _waiting_for_an_answer(runner, service, _mission())
    runner.interrupt()  # the drain timeout passed
    outcome, acked = await running
    assert outcome is None and ran == [] and acked == ["m1"]
    assert not any(event.started.withdrawn for event in service.published)  # the reaper decides, once it stops


async def test_a_mission_cancelled_while_its_attempt_waits_for_the_service_never_runs(
    attempts: tuple[Attempts, Service], ran: list[str]
) -> None:
    runner, service = attempts
    mission = _mission()
    running = await _waiting_for_an_answer(runner, service, mission)
    cancelled = new_event(mission, E.EVENT_TYPE_CANCELLED, source="service", correlation_id="c")
    cancelled.cancelled.reason = "no longer wanted"
    service.ledger.observe(cancelled)  # read from the control stream
    outcome, acked = await running
    assert outcome is None and ran == [] and acked == ["m1"]


async def test_a_started_whose_confirm_was_lost_is_answered_and_the_attempt_runs_once(
    attempts: tuple[Attempts, Service], ran: list[str]
) -> None:
    runner, service = attempts
    service.confirms_lost = 1  # the STARTED reached the log; its confirm did not come back
    outcome, acked = await _run(runner, service, _mission())
    assert outcome is not None and ran == ["m1"] and acked == ["m1"]
    # Answered before it was published again: once in the log is enough.
    assert [event.type for event in service.published] == [E.EVENT_TYPE_STARTED, E.EVENT_TYPE_COMPLETED]


async def test_an_attempt_this_worker_is_claiming_is_taken_so_its_work_message_does_not_run_too(
    attempts: tuple[Attempts, Service],
) -> None:
    """An unreadable copy's claim and the attempt's own work message must not both ask."""
    runner, service = attempts
    service.answers_lost = 1_000_000
    mission = _mission()
    service.append(_created(mission))
    claiming = asyncio.create_task(runner.claim(mission, "c"))
    async with asyncio.timeout(TIMEOUT):
        await service.asked_again.wait()
    assert runner.is_taken(mission)
    runner.interrupt()
    assert not await claiming
    assert not runner.is_taken(mission)


async def test_a_worker_stopping_while_its_started_goes_unconfirmed_stops_asking(
    attempts: tuple[Attempts, Service], ran: list[str]
) -> None:
    runner, service = attempts
    service.away = True
    running = asyncio.create_task(_run(runner, service, _mission()))
    async with asyncio.timeout(TIMEOUT):
        await service.retried.wait()
    runner.interrupt()
    outcome, acked = await asyncio.wait_for(running, TIMEOUT)
    assert outcome is None and acked == [] and ran == []  # not acked: the delivery goes back
