"""missions.amqp.broker_call: what a failed broker call raises becomes BrokerUnavailableError."""

from __future__ import annotations

import asyncio
from typing import cast

import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange

from missions.amqp import broker_call
from missions.errors import BrokerUnavailableError
from missions.eventlog import EventPublisher
from missions.events import new_event
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2


async def test_a_cancelled_error_nobody_asked_for_means_the_channel_closed_under_the_call() -> None:
    # What aiormq does to the futures pending on a channel it closes (close()'s default).
    confirm = asyncio.get_running_loop().create_future()
    confirm.set_exception(asyncio.CancelledError())
    with (
        pytest.raises(BrokerUnavailableError, match=r"^publish: the channel closed under the call$"),
        broker_call("publish"),
    ):
        await confirm
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_a_cancelled_caller_stays_cancelled() -> None:
    inside = asyncio.Event()

    async def call() -> None:
        with broker_call("publish"):
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(call())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    "error",
    [
        aiormq.exceptions.ChannelInvalidStateError("closed"),
        aiormq.exceptions.AMQPConnectionError("reset"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        RuntimeError("connection closed"),
    ],
)
async def test_broker_errors_become_broker_unavailable_and_keep_their_cause(error: Exception) -> None:
    with pytest.raises(BrokerUnavailableError, match=r"^declare: ") as raised, broker_call("declare"):
        raise error
    assert raised.value.__cause__ is error


async def test_the_bare_exception_aiormq_rejects_calls_with_when_a_connection_closes_is_broker_unavailable() -> None:
    # aiormq's FutureStore.reject_all(None) on a connection closed without a reason.
    ack = asyncio.get_running_loop().create_future()
    ack.set_exception(Exception)
    with (
        pytest.raises(BrokerUnavailableError, match=r"^ack: the connection closed under the call$"),
        broker_call("ack"),
    ):
        await ack


async def test_other_errors_pass_through() -> None:
    with pytest.raises(ValueError, match="a bug"), broker_call("publish"):
        raise ValueError("a bug")


class _ClosingExchange:
    """An exchange whose channel closes under every publish, as aiormq reports it."""

    async def publish(self, *_: object, **__: object) -> None:
        confirm = asyncio.get_running_loop().create_future()
        confirm.set_exception(asyncio.CancelledError())
        await confirm


async def test_a_publish_whose_channel_closes_under_it_is_unavailable_so_the_retrying_publisher_retries_it() -> None:
    exchange = cast(AbstractExchange, _ClosingExchange())
    publisher = EventPublisher(cast(AbstractChannel, None), exchange, exchange, Topology("t"))
    mission = mission_pb2.Mission(id="m1", type="echo")
    event = new_event(mission, events_pb2.EVENT_TYPE_COMPLETED, source="test", correlation_id="c")
    with pytest.raises(BrokerUnavailableError, match="broker did not confirm the event"):
        await publisher.publish(event)
