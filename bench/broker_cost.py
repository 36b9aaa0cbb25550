"""What RabbitMQ itself spends per message: `python -m bench.broker_cost [--messages N]`.

Confirmed persistent publishes into a stream, a classic queue and a classic priority
queue (one at a time, then 16 in flight), and consuming the stream with an ack per
record and with one multiple ack per 250. The broker's CPU comes from /proc of
beam.smp, so other clients of the same broker add to it: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from bench.measure import cpu_seconds, describe_machine, pids_named
from bench.stack import DEFAULT_AMQP_URL

__all__ = ["main"]

_BODY = b"x" * 300  # about the size of a CREATED event with a small payload


def _broker_cpu() -> float:
    return cpu_seconds(pids_named("beam.smp"))


async def _publish(channel: AbstractChannel, queue: AbstractQueue, count: int, in_flight: int) -> str:
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            message = aio_pika.Message(_BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=queue.name)

    began, cpu = time.perf_counter(), _broker_cpu()
    await asyncio.gather(*(one() for _ in range(count)))
    elapsed, spent = time.perf_counter() - began, _broker_cpu() - cpu
    return f"{count / elapsed:7.0f}/s, broker {spent / count * 1e3:.3f} ms CPU per message"


async def _consume(channel: AbstractChannel, queue_name: str, count: int, ack_every: int) -> str:
    await channel.set_qos(prefetch_count=1000)
    queue = await channel.get_queue(queue_name)
    done = asyncio.Event()
    received = 0

    async def take(message: AbstractIncomingMessage) -> None:
        nonlocal received
        received += 1
        if received % ack_every == 0 or received == count:
            await message.ack(multiple=ack_every > 1)
        if received == count:
            done.set()

    began, cpu = time.perf_counter(), _broker_cpu()
    await queue.consume(take, arguments={"x-stream-offset": "first"})
    await done.wait()
    elapsed, spent = time.perf_counter() - began, _broker_cpu() - cpu
    return f"{count / elapsed:7.0f}/s, broker {spent / count * 1e3:.3f} ms CPU per message"


async def _run(amqp_url: str, count: int) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        prefix = f"bench-broker-{uuid.uuid4().hex[:8]}"
        queues = {
            "stream": await channel.declare_queue(
                f"{prefix}.stream", durable=True, arguments={"x-queue-type": "stream"}
            ),
            "classic": await channel.declare_queue(f"{prefix}.classic", durable=True),
            "classic, priority": await channel.declare_queue(
                f"{prefix}.priority", durable=True, arguments={"x-max-priority": 4}
            ),
        }
        try:
            for kind, queue in queues.items():
                for in_flight in (1, 16):
                    figures = await _publish(channel, queue, count, in_flight)
                    print(f"publish into {kind:17s} {in_flight:2d} in flight: {figures}", flush=True)
            stream = queues["stream"].name
            for ack_every in (1, 250):
                reader = await connection.channel()
                figures = await _consume(reader, stream, 2 * count, ack_every)
                await reader.close()
                print(f"consume the stream, an ack per {ack_every:3d}:     {figures}", flush=True)
        finally:
            for queue in queues.values():
                await queue.delete(if_unused=False, if_empty=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_cost", description=__doc__)
    parser.add_argument("--messages", type=int, default=3000, help="messages per measurement (default 3000)")
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL, help="[MISSIONS_BENCH_AMQP_URL]")
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= 1_000_000:
        parser.error("--messages must be between 1 and 1000000")
    print("conditions: " + "; ".join(f"{key} {value}" for key, value in describe_machine().items()), flush=True)
    asyncio.run(_run(args.amqp_url, args.messages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
