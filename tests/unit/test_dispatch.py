"""Dispatcher: log first, then the work message of the event that took effect there,
whatever happens to the caller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

import pytest

from mission_service import dispatch as dispatch_module
from mission_service.dispatch import Dispatcher
from missions import retrying_publisher
from missions.errors import BrokerUnavailableError
from missions.eventlog import EventPublisher
from missions.retrying_publisher import RetryingPublisher
from missions.v1 import events_pb2
from tests.unit.factories import EventLog

TIMEOUT = 5.0


class Broker:
    """The log and the work queue, in order; a gate holds what is sent to it until opened."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []  # ("log" | "work", event id), in order
        self.gate = asyncio.Event()
        self.gate.set()
        self.work_failures = 0
        self.never_confirmed: set[str] = set()  # missions whose work message the broker never confirms
        self.duplicates: set[str] = set()  # events the projection finds a duplicate of an earlier one
        self.changed = asyncio.Event()  # set whenever something is sent
        self._shown: dict[str, asyncio.Future[bool]] = {}

    def logged(self, event_id: str) -> asyncio.Future[bool]:
        """Resolved once the log holds the event: whether it took effect (LogFollower.expect)."""
        return self._shown.setdefault(event_id, asyncio.get_running_loop().create_future())

    async def append(self, event: events_pb2.MissionEvent, priority: int | None) -> None:
        await self.gate.wait()
        self.sent.append(("log", event.id))
        self.logged(event.id).set_result(event.id not in self.duplicates)
        self.changed.set()

    async def append_unconfirmed(self, event: events_pb2.MissionEvent, priority: int | None) -> None:
        """An append the broker stores but whose confirm is lost."""
        await self.append(event, priority)
        raise BrokerUnavailableError("broker did not confirm the event")

    async def dispatch(self, event: events_pb2.MissionEvent, *, priority: int | None = None) -> None:
        await self.gate.wait()
        await asyncio.sleep(0.001)  # a confirm takes a round trip
        if self.work_failures or event.mission_id in self.never_confirmed:
            self.work_failures = max(0, self.work_failures - 1)
            raise BrokerUnavailableError("work message not confirmed")
        self.sent.append(("work", event.id))
        self.changed.set()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying_publisher, "_FIRST_RETRY_S", 0.001)
    monkeypatch.setattr(retrying_publisher, "_MAX_RETRY_S", 0.002)


def _dispatcher(broker: Broker) -> Dispatcher:
    return Dispatcher(RetryingPublisher(cast(EventPublisher, broker)), broker.logged)


async def _until(broker: Broker, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            broker.changed.clear()
            await broker.changed.wait()


async def test_the_work_message_follows_the_log_and_is_retried_until_confirmed() -> None:
    broker = Broker()
    broker.work_failures = 2
    event = EventLog().created("m1")
    await asyncio.wait_for(_dispatcher(broker).append(event, 2, broker.append), TIMEOUT)
    assert broker.sent == [("log", event.id), ("work", event.id)]


async def test_a_caller_that_goes_away_after_the_log_append_does_not_stop_the_dispatch() -> None:
    broker = Broker()
    broker.gate.clear()
    dispatcher = _dispatcher(broker)
    event = EventLog().created("m1")
    caller = asyncio.create_task(dispatcher.append(event, None, broker.append))
    await asyncio.sleep(0)
    caller.cancel()  # the client's deadline passed while the broker was slow
    with pytest.raises(asyncio.CancelledError):
        await caller
    broker.gate.set()
    await _until(broker, lambda: len(broker.sent) == 2)
    assert broker.sent == [("log", event.id), ("work", event.id)]


async def test_an_append_that_fails_dispatches_nothing() -> None:
    broker = Broker()

    async def unavailable(event: events_pb2.MissionEvent, priority: int | None) -> None:
        raise BrokerUnavailableError("broker did not confirm the event")

    with pytest.raises(BrokerUnavailableError):
        await asyncio.wait_for(_dispatcher(broker).append(EventLog().created("m1"), None, unavailable), TIMEOUT)
    assert broker.sent == []


async def test_an_event_the_log_shows_as_a_duplicate_gets_no_work_message() -> None:
    broker = Broker()
    log = EventLog()
    first, second = log.created("m1"), log.created("m1")  # two replicas, one idempotency key
    broker.duplicates.add(second.id)
    dispatcher = _dispatcher(broker)
    await asyncio.wait_for(dispatcher.append(first, None, broker.append), TIMEOUT)
    await asyncio.wait_for(dispatcher.append(second, None, broker.append), TIMEOUT)
    assert broker.sent == [("log", first.id), ("work", first.id), ("log", second.id)]


class Said(logging.Handler):
    """Sets ``event`` once a log record says ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.mark.parametrize("duplicate", [False, True], ids=["first", "duplicate"])
async def test_a_lost_confirm_dispatches_once_the_log_shows_the_event_unless_a_duplicate(duplicate: bool) -> None:
    broker = Broker()
    event = EventLog().created("m1")
    if duplicate:
        broker.duplicates.add(event.id)
    dispatcher = _dispatcher(broker)
    decided = Said("came first in the log")
    dispatch_module.log.addHandler(decided)
    dispatch_module.log.setLevel(logging.INFO)
    try:
        with pytest.raises(BrokerUnavailableError):
            await asyncio.wait_for(dispatcher.append(event, None, broker.append_unconfirmed), TIMEOUT)
        if duplicate:
            await asyncio.wait_for(decided.event.wait(), TIMEOUT)  # the watch decides, and says so
            assert broker.sent == [("log", event.id)]
        else:
            await _until(broker, lambda: len(broker.sent) == 2)
            assert broker.sent == [("log", event.id), ("work", event.id)]
    finally:
        dispatch_module.log.removeHandler(decided)
        dispatch_module.log.setLevel(logging.NOTSET)


async def test_dispatching_again_joins_the_dispatch_in_flight_for_the_same_generation() -> None:
    broker = Broker()
    broker.gate.clear()
    dispatcher = _dispatcher(broker)
    log = EventLog()
    first, again = log.created("m1"), log.created("m1")
    appending = asyncio.create_task(dispatcher.append(first, None, broker.append))
    retried = asyncio.create_task(dispatcher.dispatch(again, None))
    await asyncio.sleep(0)
    broker.gate.set()
    await asyncio.wait_for(asyncio.gather(appending, retried), TIMEOUT)
    assert broker.sent == [("log", first.id), ("work", first.id)]
    # Once that is done, a retry dispatches a copy of its own.
    await asyncio.wait_for(dispatcher.dispatch(again, None), TIMEOUT)
    assert broker.sent[-1] == ("work", again.id)


async def test_close_lets_confirmable_work_through_and_stops_the_rest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dispatch_module, "_CLOSE_GRACE_S", 0.5)
    broker = Broker()
    broker.never_confirmed.add("m2")
    dispatcher = _dispatcher(broker)
    log = EventLog()
    callers = [asyncio.create_task(dispatcher.append(log.created(m), None, broker.append)) for m in ("m2", "m3")]
    await _until(broker, lambda: len(broker.sent) == 2)  # both in the log, m3's work message on its way
    await asyncio.wait_for(dispatcher.close(), TIMEOUT)
    assert all(caller.done() for caller in callers)
    assert [kind for kind, _ in broker.sent] == ["log", "log", "work"]
    assert "mission m2: work message not confirmed before shutdown" in caplog.text
    assert "mission m3" not in caplog.text


async def test_a_confirmed_event_the_log_never_shows_is_unavailable_not_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch_module, "_LOGGED_WAIT_S", 0.05)
    broker = Broker()
    dispatcher = _dispatcher(broker)
    event = EventLog().created("m1", "echo")

    async def confirmed_but_unseen(event: events_pb2.MissionEvent, priority: int | None) -> None:
        broker.sent.append(("log", event.id))  # the follower is far behind: nothing resolves logged()

    with pytest.raises(BrokerUnavailableError, match="log did not show its EVENT_TYPE_CREATED"):
        await asyncio.wait_for(dispatcher.append(event, None, confirmed_but_unseen), TIMEOUT)
    assert broker.sent == [("log", event.id)]  # and no work message
