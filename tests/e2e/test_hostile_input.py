"""End to end: hostile input on the broker side, and secrets kept out of logs and answers.

Garbage published straight onto the work queue lands in the dead-letter queue with a
reason; the worker keeps working. The broker password never shows in output or answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aio_pika
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from missions import codec
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Process, Stack, free_port, payload, wait_serving, watch_events

pytestmark = pytest.mark.e2e

E = events_pb2
TIMEOUT = 60


@contextlib.asynccontextmanager
async def _channel(stack: Stack) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(stack.amqp_url, client_properties={"connection_name": "hostile-input test"})
    async with connection:
        yield await connection.channel(publisher_confirms=True)


async def _final_event(stack: Stack, mission_id: str) -> events_pb2.MissionEvent:
    """The last event of a mission: a watch of one mission ends after it."""
    request = pb.WatchEventsRequest(mission_ids=[mission_id])
    async with asyncio.timeout(TIMEOUT):
        events = [event async for event in watch_events(stack.stub, request)]
    return events[-1]


def _garbage(mission: mission_pb2.Mission) -> dict[str, aio_pika.Message]:
    """Work messages no worker can run, by the reason each should be dead-lettered with."""
    newer = E.MissionEvent(id="e-newer", mission_id=mission.id, type=E.EVENT_TYPE_CREATED)
    newer.created.mission.CopyFrom(mission)
    newer_message = codec.encode(newer, priority=4)
    assert newer_message.headers is not None
    newer_message.headers[codec.SCHEMA_HEADER] = 2  # a schema from a newer version
    return {
        "unexpected message type None": aio_pika.Message(b"\x00\xffgarbage", priority=4),
        "malformed MissionEvent": aio_pika.Message(
            b"\x0a\xff\xff\xff\xff\x0f", type=codec.MESSAGE_TYPE, headers={codec.SCHEMA_HEADER: 1}, priority=4
        ),
        "unknown schema version 2": newer_message,
    }


async def test_garbage_on_the_work_queue_is_dead_lettered_and_the_worker_keeps_working(stack: Stack) -> None:
    names = Topology(stack.namespace)
    await stack.start_service()
    victim = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"), timeout=TIMEOUT)).mission
    garbage = _garbage(victim)
    async with _channel(stack) as channel:
        # Queued ahead of the victim's own work message (priority 4 > NORMAL), with one
        # worker taking one message at a time: the victim's broken message comes first.
        for message in garbage.values():
            await channel.default_exchange.publish(message, routing_key=names.work_queue("echo"))
        worker = stack.start_worker("--concurrency", "1")

        final = await _final_event(stack, victim.id)
        assert final.type == E.EVENT_TYPE_DEAD_LETTERED
        assert "unknown schema version 2" in final.dead_lettered.reason
        assert final.dead_lettered.last_error.type == "UndecodableWorkMessage"

        # The worker still runs what it can.
        normal = await stack.stub.SubmitMission(
            pb.SubmitMissionRequest(type="echo", payload=payload(n=1)), timeout=TIMEOUT
        )
        assert (await _final_event(stack, normal.mission.id)).type == E.EVENT_TYPE_COMPLETED
        assert worker.popen is not None and worker.popen.poll() is None

        dead = await channel.get_queue(names.dead_letter_queue)
        reasons: list[str] = []
        events: list[events_pb2.MissionEvent] = []
        while (received := await dead.get(no_ack=True, fail=False)) is not None:
            if received.headers and codec.DEAD_LETTER_REASON_HEADER in received.headers:
                reasons.append(str(received.headers[codec.DEAD_LETTER_REASON_HEADER]))
            else:
                events.append(codec.decode(received.body, received.headers, received.type))
    assert len(reasons) == len(garbage)
    for expected in garbage:
        assert any(expected in reason for reason in reasons), (expected, reasons)
    # The victim is a dead letter of the log, not a message here.
    assert events == []
    listed = await stack.stub.ListDeadLetters(pb.ListDeadLettersRequest(), timeout=TIMEOUT)
    assert [mission.id for mission in listed.missions] == [victim.id]
    assert "handling a delivery failed" not in worker.output()
    assert worker.output().count("dead-lettered") >= len(garbage)


async def test_the_broker_password_never_shows_in_logs_or_answers(stack: Stack) -> None:
    assert ":guest@" in stack.amqp_url  # guest's password is real, so the processes do connect with it
    service = await stack.start_service("--log-level", "DEBUG")
    health_port = free_port()
    worker = stack.start_worker("--log-level", "DEBUG", "--health-listen", f"127.0.0.1:{health_port}")
    await wait_serving(f"127.0.0.1:{health_port}", worker)
    mission = (await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo"), timeout=TIMEOUT)).mission
    assert (await _final_event(stack, mission.id)).type == E.EVENT_TYPE_COMPLETED

    answers = [
        await stack.stub.GetStats(pb.GetStatsRequest(), timeout=TIMEOUT),
        await stack.stub.ListWorkers(pb.ListWorkersRequest(include_gone=True), timeout=TIMEOUT),
        await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission.id), timeout=TIMEOUT),
    ]
    for target in (stack.target, f"127.0.0.1:{health_port}"):
        async with grpc.aio.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answers.append(await health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT))
    texts = [str(answer) for answer in answers] + [answer.SerializeToString().decode("latin-1") for answer in answers]
    for process in (service, worker):
        process.stop()
        texts.append(process.output())
    for text in texts:
        assert "guest:guest" not in text
        assert ":guest@" not in text


@pytest.mark.parametrize("module", ["mission_service", "worker_service"])
def test_a_refused_password_is_not_printed_either(stack: Stack, module: str) -> None:
    refused = stack.amqp_url.replace(":guest@", ":not-the-password@")
    env = {**stack.env(), "MISSIONS_AMQP_URL": refused, "MISSIONS_LOG_LEVEL": "DEBUG"}
    process = Process([module], env, stack.directory / f"{module}.log").start()
    assert process.popen is not None
    try:
        assert process.popen.wait(TIMEOUT) != 0  # the broker refuses the login, so it exits
    finally:
        process.kill()
    assert "ACCESS_REFUSED" in process.output()
    assert "not-the-password" not in process.output()
