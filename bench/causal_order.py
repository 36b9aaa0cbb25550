"""Does a consumer's reply reach the log before the message it replies to?
`python -m bench.causal_order [--pairs N] [--load K]`

Models SubmitMission and a worker's STARTED: an "original" message goes to a stream (the
log) and, one way or the other, to a classic queue (the work queue); a consumer of the
classic queue publishes a "reply" for each into the stream at once, as a worker
publishes STARTED. Then the stream is read back and every reply found ahead of its
original is counted.

- routed together: one publish, routed to the classic queue and the stream (how
  SubmitMission worked before; RabbitMQ may deliver from the classic queue before the
  stream has stored the message);
- log, then work: the original to the stream, and after its confirm a second message to
  the classic queue (how SubmitMission works now).

Inversions are rare and need a loaded machine (``--load K`` runs K busy-looping
processes meanwhile): on 2 cores with 4 busy loops we saw 1 in 60,000 routed-together
pairs in one run and none in another. Each run of 20,000 pairs takes about 2 minutes there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import time
import uuid
from collections.abc import Iterator

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from bench.measure import describe_machine
from bench.stack import DEFAULT_AMQP_URL

__all__ = ["main"]

_REPLY = b"reply "


async def _run(url: str, pairs: int, routed_together: bool) -> int:
    """Inversions among ``pairs`` originals and their replies, in a namespace of its own."""
    ns = f"bench-causal-{uuid.uuid4().hex[:8]}"
    submitter, worker = await aio_pika.connect(url), await aio_pika.connect(url)
    try:
        channel = await submitter.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(f"{ns}.events", aio_pika.ExchangeType.TOPIC, auto_delete=True)
        log = await channel.declare_queue(f"{ns}.log", durable=True, arguments={"x-queue-type": "stream"})
        await log.bind(exchange, "#")
        work = await channel.declare_queue(f"{ns}.work", durable=True)
        if routed_together:
            await work.bind(exchange, "created")
        try:
            await _exchange_pairs(channel, exchange, worker, work.name, pairs, routed_together)
            return await _count_inversions(submitter, log.name, pairs)
        finally:
            await channel.queue_delete(log.name)
            await channel.queue_delete(work.name)
    finally:
        await submitter.close()
        await worker.close()


async def _exchange_pairs(
    channel: AbstractChannel,
    exchange: AbstractExchange,
    worker: aio_pika.abc.AbstractConnection,
    work_queue: str,
    pairs: int,
    routed_together: bool,
) -> None:
    worker_channel = await worker.channel(publisher_confirms=True)
    await worker_channel.set_qos(prefetch_count=64)
    replies = await worker_channel.get_exchange(exchange.name)
    replied = 0
    done = asyncio.Event()

    async def reply(message: AbstractIncomingMessage) -> None:
        nonlocal replied
        await replies.publish(aio_pika.Message(_REPLY + message.body, delivery_mode=2), routing_key="started")
        await message.ack()
        replied += 1
        if replied == pairs:
            done.set()

    await (await worker_channel.get_queue(work_queue)).consume(reply)
    slots = asyncio.Semaphore(20)

    async def submit(number: int) -> None:
        async with slots:
            body = b"%d" % number
            await exchange.publish(aio_pika.Message(body, delivery_mode=2), routing_key="created")
            if not routed_together:
                await channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=2), routing_key=work_queue)

    await asyncio.gather(*(submit(number) for number in range(pairs)))
    await asyncio.wait_for(done.wait(), 600)
    await worker_channel.close()


async def _count_inversions(connection: aio_pika.abc.AbstractConnection, log_queue: str, pairs: int) -> int:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000)
    seen: set[bytes] = set()
    inversions = read = 0
    finished = asyncio.Event()

    async def take(message: AbstractIncomingMessage) -> None:
        nonlocal inversions, read
        await message.ack()
        read += 1
        if message.body.startswith(_REPLY):
            inversions += message.body.removeprefix(_REPLY) not in seen
        else:
            seen.add(message.body)
        if read == 2 * pairs:
            finished.set()

    await (await channel.get_queue(log_queue)).consume(take, arguments={"x-stream-offset": "first"})
    await asyncio.wait_for(finished.wait(), 300)
    await channel.close()
    return inversions


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def _busy(processes: int) -> Iterator[None]:
    """``processes`` busy loops, as other tenants of a shared machine would be."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(processes)]
    for spinner in spinners:
        spinner.start()
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.causal_order", description=__doc__)
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL)
    parser.add_argument("--pairs", type=int, default=20_000, help="originals (and replies) per run [20000]")
    parser.add_argument("--runs", type=int, default=3, help="runs of each way [3]")
    parser.add_argument("--load", type=int, default=4, help="busy-looping processes during the runs [4]")
    args = parser.parse_args(argv)
    print("conditions: " + "; ".join(f"{key} {value}" for key, value in describe_machine().items()), flush=True)
    print(f"{args.pairs} pairs per run, 20 originals in flight, {args.load} busy processes", flush=True)
    with _busy(args.load):
        for routed_together, name in ((True, "routed together"), (False, "log, then work")):
            counts = []
            for _ in range(args.runs):
                began = time.perf_counter()
                counts.append(asyncio.run(_run(args.amqp_url, args.pairs, routed_together)))
                print(f"  {name}: {counts[-1]} inversions ({time.perf_counter() - began:.1f} s)", flush=True)
            print(f"{name:16s}: {sum(counts)} replies ahead of their original in {args.runs * args.pairs}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
