"""The broker's share of one mission, with nothing of ours around it: `python -m bench.floor`.

Replays the message flow a mission needs under docs/guarantees.md with bare aio-pika:
no gRPC, no SQLite, no handler, no logging. Per mission: CREATED confirmed into the log
stream, then its work message confirmed into the work queue; a "worker" consumes it,
publishes STARTED into the log and acks once it is confirmed; a "follower" reads the
log and answers the STARTED of each record on the worker's session queue; the worker,
once answered, publishes COMPLETED. The worker also follows the control stream (which
holds only the service's decisions, none here), as the real processes do. Three
connections stand for the service's two and the worker's one; the namespace's topology
is the real one (missions.amqp.declare_topology).

It prints missions/s and the CPU per mission of the broker (beam.smp, from /proc) and of
this process. The broker's share bounds any implementation of this design: on C cores,
no more than C / (broker CPU per mission) missions/s even if our own code cost nothing.
Then, one at a time, ``--sequential`` more missions: the p50/p99 of the submit's two
confirms, and of submit -> COMPLETED read from the log (the least a watching client
could see).

``--no-confirms`` also runs it with publisher confirms off, to show what they cost.
``--group-commit`` also runs the flow as the services now publish it (docs/events.md,
group commit): events published while a publish is in flight wait and then go out
together, one EventBatch record per routing key holding all of them. Work messages
stay one per mission.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage

from bench.measure import cpu_seconds, describe_machine, own_cpu_seconds, pids_named
from bench.stack import DEFAULT_AMQP_URL
from bench.stats import percentile
from missions import codec, topology
from missions.amqp import declare_topology, declare_work_queue, delete_topology
from missions.events import new_event
from missions.group_commit import GroupCommit
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2, worker_pb2

__all__ = ["main"]

E = events_pb2

OnRecord = Callable[[AbstractIncomingMessage], None]

_SESSION = "floor"


class _Single:
    """One confirmed record per event, as the service and workers published before group commit."""

    def __init__(self, exchange: AbstractExchange) -> None:
        self._exchange = exchange

    async def publish(self, event: events_pb2.MissionEvent) -> None:
        await self._exchange.publish(codec.encode(event), routing_key=topology.event_routing_key(event))


class _GroupCommit:
    """The services' group commit (missions.group_commit) on the bare exchange."""

    def __init__(self, exchange: AbstractExchange) -> None:
        async def send(record: aio_pika.Message, routing_key: str) -> None:
            await exchange.publish(record, routing_key=routing_key)

        self._group = GroupCommit(send)

    async def publish(self, event: events_pb2.MissionEvent) -> None:
        await self._group.publish(event, topology.event_routing_key(event))


def _events(message: AbstractIncomingMessage) -> list[events_pb2.MissionEvent]:
    """The events of a log record: one, or a group commit's batch."""
    return codec.decode_record(message.body, message.headers, message.type)


class _Flow:
    """One run's channels and counters."""

    def __init__(self, names: Topology, missions: int, answers: AbstractExchange) -> None:
        """``answers``: the exchange the follower answers the worker's STARTED on."""
        self.names = names
        self.missions = missions
        self.completed = 0
        self.done = asyncio.Event()
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._answers = answers
        self._answering: set[asyncio.Task[object]] = set()
        self._verdicts: dict[str, asyncio.Future[None]] = {}  # by STARTED id

    def expect(self, mission_id: str) -> asyncio.Future[float]:
        """Resolved with the perf_counter at which the log showed the mission's COMPLETED."""
        self._waiters[mission_id] = waiter = asyncio.get_running_loop().create_future()
        return waiter

    async def submit(self, publisher: AbstractChannel, log: _Single | _GroupCommit, mission_id: str) -> None:
        """What SubmitMission sends: CREATED to the log, then (once confirmed) the work message."""
        mission = mission_pb2.Mission(id=mission_id, type="noop", max_attempts=3)
        created = new_event(mission, E.EVENT_TYPE_CREATED, source="floor", correlation_id=mission_id)
        created.created.mission.CopyFrom(mission)
        await log.publish(created)
        dispatch = await publisher.get_exchange(self.names.dispatch_exchange, ensure=False)
        await dispatch.publish(codec.encode(created), routing_key="")

    async def work(self, log: _Single | _GroupCommit, message: AbstractIncomingMessage) -> None:
        """What a worker does with a noop: STARTED confirmed before the ack, then COMPLETED."""
        created = codec.decode(message.body, message.headers, message.type)
        mission = created.created.mission
        mission.attempt = 1
        started = new_event(mission, E.EVENT_TYPE_STARTED, source="floor", correlation_id=created.correlation_id)
        started.started.worker_id = "floor"
        answered = self._verdicts[started.id] = asyncio.get_running_loop().create_future()
        await log.publish(started)
        await message.ack()
        await answered
        completed = new_event(mission, E.EVENT_TYPE_COMPLETED, source="floor", correlation_id=created.correlation_id)
        completed.completed.duration.FromMilliseconds(0)
        await log.publish(completed)

    @staticmethod
    def followed(message: AbstractIncomingMessage) -> None:
        """What the worker's ledger does with a control record: decode it."""
        _events(message)

    def answered(self, message: AbstractIncomingMessage) -> None:
        """What the worker does with the service's answers: decode them, let their attempts run."""
        for started_id in worker_pb2.StartVerdicts.FromString(message.body).run:
            self._verdicts.pop(started_id).set_result(None)

    def logged(self, message: AbstractIncomingMessage) -> None:
        """What the follower does with a log record: decode it (storing it is ours, not the
        broker's) and answer the STARTED it holds, one message per record."""
        events = _events(message)
        verdicts = worker_pb2.StartVerdicts(run=[event.id for event in events if event.type == E.EVENT_TYPE_STARTED])
        if verdicts.run:
            answer = aio_pika.Message(verdicts.SerializeToString(), delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT)
            task = asyncio.create_task(self._answers.publish(answer, routing_key=self.names.session_queue(_SESSION)))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        for event in events:
            if event.type == E.EVENT_TYPE_COMPLETED:
                self.completed += 1
                if (waiter := self._waiters.pop(event.mission_id, None)) is not None:
                    waiter.set_result(time.perf_counter())
        if self.completed == self.missions:
            self.done.set()


async def _read_stream(connection: AbstractConnection, name: str, on_record: OnRecord) -> None:
    """A stream consumer returning credit with one multiple ack per 250 records, as read_stream does."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)
    queue = await channel.get_queue(name)
    unacked = 0

    async def take(message: AbstractIncomingMessage) -> None:
        nonlocal unacked
        unacked += 1
        on_record(message)
        if unacked >= 250:
            unacked = 0
            await message.ack(multiple=True)

    await queue.consume(take, arguments={"x-stream-offset": "first"})


def _sync(on_message: OnRecord) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    async def consume(message: AbstractIncomingMessage) -> None:
        on_message(message)

    return consume


@contextlib.asynccontextmanager
async def _namespace(amqp_url: str) -> AsyncIterator[Topology]:
    names = Topology(f"bench-floor-{uuid.uuid4().hex[:8]}")
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await declare_topology(channel, names)
        await declare_work_queue(channel, names, "noop")
        try:
            yield names
        finally:
            await delete_topology(connection, names, ["noop"])


async def _sequential(flow: _Flow, submit: Callable[[str], Awaitable[None]], count: int) -> dict[str, float]:
    submits, rounds = [], []
    for _ in range(count):
        mission_id = str(uuid.uuid4())
        completed = flow.expect(mission_id)
        began = time.perf_counter()
        await submit(mission_id)
        submits.append(time.perf_counter() - began)
        rounds.append(await completed - began)
    figures = {}
    for name, samples in (("submit", submits), ("submit -> COMPLETED", rounds)):
        for q in (0.5, 0.99):
            figures[f"{name} p{q * 100:g} ms"] = percentile(samples, q) * 1e3
    return figures


@dataclass(frozen=True, slots=True)
class _Variant:
    group_commit: bool = False
    confirms: bool = True


async def _run(
    amqp_url: str, missions: int, clients: int, prefetch: int, variant: _Variant, sequential: int
) -> dict[str, float]:
    async with _namespace(amqp_url) as names:
        service = await aio_pika.connect(amqp_url)
        service_log = await aio_pika.connect(amqp_url)
        worker = await aio_pika.connect(amqp_url)
        async with service, service_log, worker:
            answers = await service.channel(publisher_confirms=False)
            flow = _Flow(names, missions, answers.default_exchange)
            publisher = await service.channel(publisher_confirms=variant.confirms)
            log_of = _GroupCommit if variant.group_commit else _Single
            service_log_publisher = log_of(await publisher.get_exchange(names.events_exchange))
            outcomes = await worker.channel(publisher_confirms=variant.confirms)
            worker_log_publisher = log_of(await outcomes.get_exchange(names.events_exchange))
            await _read_stream(service_log, names.log_queue, flow.logged)
            await _read_stream(worker, names.control_queue, flow.followed)
            session = await (await worker.channel()).declare_queue(names.session_queue(_SESSION), exclusive=True)
            await session.consume(_sync(flow.answered), no_ack=True)
            consumer = await worker.channel()
            await consumer.set_qos(prefetch_count=prefetch)
            work = await consumer.get_queue(names.work_queue("noop"))
            running: set[asyncio.Task[None]] = set()

            async def on_work(message: AbstractIncomingMessage) -> None:
                task = asyncio.create_task(flow.work(worker_log_publisher, message))
                running.add(task)
                task.add_done_callback(running.discard)

            await work.consume(on_work)
            numbers = iter(range(missions))

            async def submit(mission_id: str) -> None:
                await flow.submit(publisher, service_log_publisher, mission_id)

            async def client() -> None:
                for _ in numbers:  # one shared iterator: each number is taken once
                    await submit(str(uuid.uuid4()))

            broker, own, began = cpu_seconds(pids_named("beam.smp")), own_cpu_seconds(), time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            await flow.done.wait()
            elapsed = time.perf_counter() - began
            broker, own = cpu_seconds(pids_named("beam.smp")) - broker, own_cpu_seconds() - own
            latencies = await _sequential(flow, submit, sequential)
    return {
        "missions/s": missions / elapsed,
        "broker CPU ms/mission": broker / missions * 1e3,
        "this process CPU ms/mission": own / missions * 1e3,
        **latencies,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--missions", type=int, default=5000, help="missions per run (default 5000)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent submitters (default 16)")
    parser.add_argument("--sequential", type=int, default=500, help="missions one at a time, after (default 500)")
    parser.add_argument("--prefetch", type=int, default=8, help="the worker's prefetch, like --concurrency (8)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant (default 3)")
    parser.add_argument("--group-commit", action="store_true", help="also run group commit (the services' design)")
    parser.add_argument(
        "--no-confirms", action="store_true", help="also run without publisher confirms: what they cost the broker"
    )
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL, help="[MISSIONS_BENCH_AMQP_URL]")
    args = parser.parse_args(argv)
    if not 1 <= args.missions <= 1_000_000 or not 1 <= args.clients <= 1000 or not 1 <= args.repeat <= 100:
        parser.error("--missions 1..1000000, --clients 1..1000, --repeat 1..100")
    if not 1 <= args.sequential <= 100_000:
        parser.error("--sequential must be between 1 and 100000")
    print("conditions: " + "; ".join(f"{key} {value}" for key, value in describe_machine().items()), flush=True)
    print(f"{args.missions} noop missions per run, {args.clients} clients, worker prefetch {args.prefetch}", flush=True)
    variants = {"one event per record": _Variant()}
    if args.group_commit:
        variants["group commit"] = _Variant(group_commit=True)
    if args.no_confirms:
        variants["one event per record, no confirms"] = _Variant(confirms=False)
    for run in range(1, args.repeat + 1):
        for name, variant in variants.items():
            figures = asyncio.run(
                _run(args.amqp_url, args.missions, args.clients, args.prefetch, variant, args.sequential)
            )
            shown = ", ".join(f"{key} {value:.2f}" for key, value in figures.items())
            print(f"run {run}, {name}: {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
