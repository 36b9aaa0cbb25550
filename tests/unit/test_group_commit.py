"""Group commit: one record in flight per routing key; what arrives meanwhile shares the next."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from missions import codec
from missions.errors import BrokerUnavailableError
from missions.group_commit import MAX_RECORD_BYTES, GroupCommit
from missions.v1 import events_pb2
from tests.unit.factories import EventLog, struct

TIMEOUT = 10


class Broker:
    """Confirms each record when the test says so; records what was sent, by routing key."""

    def __init__(self) -> None:
        self.records: list[tuple[str, list[events_pb2.MissionEvent]]] = []
        self.confirms: asyncio.Queue[BrokerUnavailableError | None] = asyncio.Queue()
        self.sent = asyncio.Condition()

    async def send(self, message: aio_pika.Message, routing_key: str) -> None:
        async with self.sent:
            self.records.append((routing_key, codec.decode_record(message.body, message.headers, message.type)))
            self.sent.notify_all()
        error = await self.confirms.get()
        if error is not None:
            raise error

    async def wait_for_records(self, count: int) -> None:
        async with self.sent:
            await asyncio.wait_for(self.sent.wait_for(lambda: len(self.records) >= count), TIMEOUT)


async def _in_flight(
    broker: Broker, group: GroupCommit, event: events_pb2.MissionEvent, key: str = "k"
) -> asyncio.Task[None]:
    """Publish ``event`` alone and wait until its record is sent, unconfirmed: the lane is busy."""
    publishing = asyncio.create_task(group.publish(event, key))
    await broker.wait_for_records(len(broker.records) + 1)
    return publishing


def _events(count: int) -> list[events_pb2.MissionEvent]:
    log = EventLog()
    return [log.created(f"m{n}", "echo") for n in range(count)]


async def test_a_lone_event_leaves_at_once_in_a_record_of_its_own() -> None:
    broker = Broker()
    group = GroupCommit(broker.send)
    (event,) = _events(1)
    publishing = asyncio.create_task(group.publish(event, "created.echo"))
    await broker.wait_for_records(1)
    assert broker.records == [("created.echo", [event])]
    assert not publishing.done()  # it returns on the confirm, not before
    broker.confirms.put_nowait(None)
    await asyncio.wait_for(publishing, TIMEOUT)


async def test_events_that_arrive_during_a_confirm_share_the_next_record_in_order() -> None:
    broker = Broker()
    group = GroupCommit(broker.send)
    first, *rest = _events(6)
    publishes = [await _in_flight(broker, group, first, "created.echo")]
    publishes += [asyncio.create_task(group.publish(event, "created.echo")) for event in rest]
    await asyncio.sleep(0)  # let them queue behind the record in flight
    assert len(broker.records) == 1
    broker.confirms.put_nowait(None)
    await broker.wait_for_records(2)
    assert broker.records[1] == ("created.echo", rest)
    assert publishes[0].done() and not any(publish.done() for publish in publishes[1:])
    broker.confirms.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*publishes), TIMEOUT)


async def test_each_routing_key_has_its_own_record_in_flight() -> None:
    broker = Broker()
    group = GroupCommit(broker.send)
    created, started = _events(2)
    publishes = [
        asyncio.create_task(group.publish(created, "created.echo")),
        asyncio.create_task(group.publish(started, "started.echo")),
    ]
    await broker.wait_for_records(2)
    assert sorted(key for key, _ in broker.records) == ["created.echo", "started.echo"]
    broker.confirms.put_nowait(None)
    broker.confirms.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*publishes), TIMEOUT)


async def test_an_unconfirmed_record_fails_every_event_in_it_and_the_next_goes_out() -> None:
    broker = Broker()
    group = GroupCommit(broker.send)
    first, second, third = _events(3)
    lost = [await _in_flight(broker, group, first)]
    queued = [asyncio.create_task(group.publish(event, "k")) for event in (second, third)]
    broker.confirms.put_nowait(BrokerUnavailableError("connection lost"))
    await broker.wait_for_records(2)
    broker.confirms.put_nowait(BrokerUnavailableError("connection lost again"))
    for publish in [*lost, *queued]:
        with pytest.raises(BrokerUnavailableError, match="connection lost"):
            await asyncio.wait_for(publish, TIMEOUT)
    # The lane is idle again: a retry leaves at once.
    retry = asyncio.create_task(group.publish(first, "k"))
    await broker.wait_for_records(3)
    broker.confirms.put_nowait(None)
    await asyncio.wait_for(retry, TIMEOUT)


async def test_a_record_is_bounded_in_events_and_bytes() -> None:
    broker = Broker()
    group = GroupCommit(broker.send, max_events=3)
    first, *rest = _events(8)
    big = EventLog().created("big", "echo", payload=struct(blob="x" * (MAX_RECORD_BYTES // 2)))
    publishes = [await _in_flight(broker, group, first)]
    publishes += [asyncio.create_task(group.publish(event, "k")) for event in [*rest, big, big]]
    await asyncio.sleep(0)
    for count in range(2, 6):
        broker.confirms.put_nowait(None)
        await broker.wait_for_records(count)
    broker.confirms.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*publishes), TIMEOUT)
    # Three events at most; then the two halves of a megabyte apart: together they pass the byte bound.
    assert [len(events) for _, events in broker.records] == [1, 3, 3, 2, 1]
    assert [event.mission_id for _, events in broker.records for event in events] == [
        event.mission_id for event in [first, *rest, big, big]
    ]


async def test_close_fails_what_waits_instead_of_leaving_it_hanging() -> None:
    broker = Broker()
    group = GroupCommit(broker.send)
    first, second = _events(2)
    publishes = [await _in_flight(broker, group, first)]
    publishes.append(asyncio.create_task(group.publish(second, "k")))
    await asyncio.sleep(0)
    await group.close()
    for publish in publishes:
        with pytest.raises(BrokerUnavailableError, match="closed"):
            await asyncio.wait_for(publish, TIMEOUT)


async def test_a_publisher_that_gives_up_withdraws_its_waiting_event_and_holds_back_no_one() -> None:
    broker = Broker()
    group = GroupCommit(broker.send)
    first, second, third = _events(3)
    publishes = [await _in_flight(broker, group, first)]
    impatient = asyncio.create_task(group.publish(second, "k"))
    patient = asyncio.create_task(group.publish(third, "k"))
    await asyncio.sleep(0)
    impatient.cancel()
    broker.confirms.put_nowait(None)
    await broker.wait_for_records(2)
    broker.confirms.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*publishes, patient), TIMEOUT)
    # Not sent later, where it could land after the mission's next event.
    assert [[event.id for event in events] for _, events in broker.records] == [[first.id], [third.id]]


async def test_close_before_the_sender_ran_fails_the_waiters_and_later_publishes() -> None:
    broker = Broker()
    group = GroupCommit(broker.send)
    (event,) = _events(1)
    waiting = asyncio.create_task(group.publish(event, "k"))
    await asyncio.sleep(0)  # queued; its sender task has not run a step yet
    await group.close()
    with pytest.raises(BrokerUnavailableError, match="closed"):
        await asyncio.wait_for(waiting, TIMEOUT)
    with pytest.raises(BrokerUnavailableError, match="closed"):
        await group.publish(event, "k")
    assert broker.records == []
