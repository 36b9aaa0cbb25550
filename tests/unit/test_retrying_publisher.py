"""RetryingPublisher: publishing retried through broker outages until confirmed."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from missions import retrying_publisher
from missions.errors import BrokerUnavailableError
from missions.eventlog import EventPublisher
from missions.retrying_publisher import RetryingPublisher
from missions.v1 import events_pb2

E = events_pb2
TIMEOUT = 5.0


class FlakyPublisher:
    """Fails the first ``failures`` publishes, then confirms; can hold publishes at a gate."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or BrokerUnavailableError("broker did not confirm the event")
        self.attempts: list[tuple[str, int | None]] = []
        self.confirmed: list[str] = []
        self.gate: asyncio.Event | None = None
        self.arrived: asyncio.Queue[str] = asyncio.Queue()

    async def publish(
        self, event: events_pb2.MissionEvent, *, priority: int | None = None, timeout: float = 10.0
    ) -> None:
        self.attempts.append((event.id, priority))
        if len(self.attempts) <= self.failures:
            raise self.error
        if self.gate is not None:
            self.arrived.put_nowait(event.id)
            await self.gate.wait()
        self.confirmed.append(event.id)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying_publisher, "_FIRST_RETRY_S", 0.0001)
    monkeypatch.setattr(retrying_publisher, "_MAX_RETRY_S", 0.0002)


def _event(event_id: str = "e1") -> events_pb2.MissionEvent:
    return E.MissionEvent(id=event_id, mission_id="m1", type=E.EVENT_TYPE_PROGRESS)


def _retrying(publisher: FlakyPublisher) -> RetryingPublisher:
    return RetryingPublisher(cast(EventPublisher, publisher))


async def test_a_confirmed_publish_goes_out_once() -> None:
    publisher = FlakyPublisher()
    retrying = _retrying(publisher)
    await asyncio.wait_for(retrying.publish(_event(), priority=7), TIMEOUT)
    assert publisher.attempts == [("e1", 7)]
    assert publisher.confirmed == ["e1"]
    assert retrying.waiting == 0


async def test_an_unavailable_broker_is_retried_until_it_confirms() -> None:
    publisher = FlakyPublisher(failures=5)
    retrying = _retrying(publisher)
    await asyncio.wait_for(retrying.publish(_event(), priority=2), TIMEOUT)
    # The same event, with the same priority, every time.
    assert publisher.attempts == [("e1", 2)] * 6
    assert publisher.confirmed == ["e1"]
    assert retrying.waiting == 0


async def test_other_errors_are_not_retried() -> None:
    publisher = FlakyPublisher(failures=1, error=RuntimeError("bug"))
    retrying = _retrying(publisher)
    with pytest.raises(RuntimeError, match="bug"):
        await asyncio.wait_for(retrying.publish(_event()), TIMEOUT)
    assert publisher.attempts == [("e1", None)]
    assert retrying.waiting == 0


async def test_waiting_counts_publishes_in_flight() -> None:
    publisher = FlakyPublisher()
    gate = publisher.gate = asyncio.Event()
    retrying = _retrying(publisher)
    assert retrying.waiting == 0
    first = asyncio.create_task(retrying.publish(_event("e1")))
    second = asyncio.create_task(retrying.publish(_event("e2")))
    arrived = {await asyncio.wait_for(publisher.arrived.get(), TIMEOUT) for _ in range(2)}
    assert arrived == {"e1", "e2"}
    assert retrying.waiting == 2
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)
    assert retrying.waiting == 0
    assert sorted(publisher.confirmed) == ["e1", "e2"]


async def test_a_publish_waiting_out_an_outage_is_counted_until_it_is_confirmed() -> None:
    publisher = FlakyPublisher(failures=3)
    gate = publisher.gate = asyncio.Event()
    retrying = _retrying(publisher)
    publishing = asyncio.create_task(retrying.publish(_event()))
    assert await asyncio.wait_for(publisher.arrived.get(), TIMEOUT) == "e1"
    assert len(publisher.attempts) == 4
    assert retrying.waiting == 1
    gate.set()
    await asyncio.wait_for(publishing, TIMEOUT)
    assert retrying.waiting == 0


async def test_a_cancelled_publish_is_no_longer_counted() -> None:
    publisher = FlakyPublisher()
    publisher.gate = asyncio.Event()
    retrying = _retrying(publisher)
    publishing = asyncio.create_task(retrying.publish(_event()))
    await asyncio.wait_for(publisher.arrived.get(), TIMEOUT)
    assert retrying.waiting == 1
    publishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(publishing, TIMEOUT)
    assert retrying.waiting == 0
    assert publisher.confirmed == []
