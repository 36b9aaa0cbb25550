"""Deliveries in, settled once: the worker's side of the work queues.

A worker consumes the work queue of every mission type it serves, on one channel whose
prefetch (``--concurrency``) is shared by all of them. Each delivery is decoded (a
message that cannot run is dead-lettered), fenced (work the ledger knows to be taken,
cancelled or over is acked and dropped), then waits for one of ``--concurrency`` run
slots: at most that many attempts run at once, and the deliveries waiting for a slot
are the worker's look-ahead, at most ``--concurrency`` more since they hold the
prefetch. The attempt (worker_service/attempt.py) acks the delivery once its STARTED is
confirmed; a delivery whose STARTED was not confirmed goes back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

from missions import codec
from missions.amqp import broker_call, close_channel, declare_work_queue
from missions.errors import BrokerUnavailableError, DecodeError
from missions.events import new_event
from missions.logs import mission_context, mission_fields
from missions.outcomes import Outcome
from missions.retrying_publisher import RetryingPublisher
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2
from worker_service.attempt import Attempts
from worker_service.ledger import MissionLedger
from worker_service.settings import WorkerSettings
from worker_service.slots import Slots, SlotsClosedError

if TYPE_CHECKING:
    from missions.tracing import Tracing

__all__ = ["MissionConsumer", "NotWorkError", "decode_work"]

log = logging.getLogger(__name__)

E = events_pb2

# How long a delivery waits for a run slot before it is handed back to its queue (to come
# back, or go to another worker): well within RabbitMQ's consumer_timeout (30 min by
# default), which closes the channel of a consumer that holds a delivery unacked longer.
_HOLD_LIMIT_S = 60.0


class NotWorkError(DecodeError):
    """A well-formed event that is not work (misrouted): no reason to end its mission."""


def decode_work(
    body: bytes, headers: Mapping[str, Any] | None, message_type: str | None
) -> tuple[events_pb2.MissionEvent, mission_pb2.Mission]:
    """A work-queue message as (event, mission to run, with ``attempt`` set to the new attempt).

    Raises DecodeError for anything that cannot run: not a MissionEvent of our schema,
    not a runnable event type, or a mission that contradicts its event.
    """
    event = codec.decode(body, headers, message_type)
    if event.type == E.EVENT_TYPE_CREATED:
        source = event.created.mission
    elif event.type == E.EVENT_TYPE_RETRYING:
        source = event.retrying.mission
    elif event.type == E.EVENT_TYPE_REDRIVEN:
        source = event.redriven.mission
    else:
        raise NotWorkError(f"{E.EventType.Name(event.type)} is not a runnable event")
    if source.id != event.mission_id or not source.type:
        raise DecodeError("the event's mission lacks a type or has another id than the event")
    if not 0 <= source.attempt < codec.INT32_MAX or source.redrive_count < 0:
        raise DecodeError(f"attempt {source.attempt} / generation {source.redrive_count} out of range")
    try:
        source.timeout.ToTimedelta()
    except (OverflowError, ValueError) as exc:
        raise DecodeError(f"timeout out of range: {exc}") from exc
    mission = mission_pb2.Mission()
    mission.CopyFrom(source)
    mission.attempt += 1
    return event, mission


class MissionConsumer:
    """Consumes the work queues of ``mission_types`` and runs at most ``concurrency`` attempts at once."""

    def __init__(
        self,
        settings: WorkerSettings,
        connection: AbstractConnection,
        retrying: RetryingPublisher,
        attempts: Attempts,
        ledger: MissionLedger,
        mission_types: Sequence[str],
        tracing: Tracing | None = None,
    ) -> None:
        """``tracing``: run each attempt in a span (None: tracing off)."""
        self._settings = settings
        self._tracing = tracing
        self._connection = connection
        self._retrying = retrying
        self.attempts = attempts
        self._ledger = ledger
        self.mission_types = tuple(mission_types)
        self._names = Topology(settings.namespace)
        self._slots = Slots(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.consuming = asyncio.Event()  # set once every queue's consumer is registered
        self.last_delivery_time: float | None = None
        self.undecodable = 0  # work messages dead-lettered because they could not be decoded

    @property
    def running(self) -> int:
        """Attempts holding a run slot."""
        return self._slots.taken

    @property
    def waiting(self) -> int:
        """Deliveries waiting for a run slot (the look-ahead)."""
        return self._slots.waiting

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain: see WorkerSettings.drain_timeout."""
        channel = await self._connection.channel()
        try:
            # global_: one limit for the channel, shared by the queues of every served type.
            await channel.set_qos(prefetch_count=self._settings.concurrency, global_=True)
            consumers = []
            for mission_type in self.mission_types:
                queue = await declare_work_queue(channel, self._names, mission_type)
                consumers.append((queue, await queue.consume(self._on_delivery)))
            self.consuming.set()
            log.info(
                "worker %s consuming the work of %s (concurrency %d)",
                self._settings.worker_id,
                ", ".join(self.mission_types),
                self._settings.concurrency,
            )
            await stop.wait()
            self._slots.close()  # first, so nothing starts now: the look-ahead goes back at once
            for queue, tag in consumers:
                await queue.cancel(tag)
            await self._drain()
        finally:
            # A delivery not yet started (unacked) goes back to the queue when the channel closes.
            await close_channel(channel)

    async def _drain(self) -> None:
        """Let running missions finish for up to the drain timeout, then interrupt the rest.

        Interrupted attempts end with the retryable error ``Interrupted`` (published like
        any outcome, so another worker retries them); nothing is left unaccounted for.
        """
        if not self._tasks:
            return
        log.info("draining %d running missions (up to %s)", self.running, self._settings.drain_timeout)
        _, pending = await asyncio.wait(self._tasks, timeout=self._settings.drain_timeout.total_seconds())
        if pending:
            log.warning("%d missions still running after the drain timeout: interrupting them", len(pending))
            self.attempts.interrupt()
            await asyncio.wait(pending)

    async def _on_delivery(self, message: AbstractIncomingMessage) -> None:
        self.last_delivery_time = time.time()
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug of ours, not the handler's (run_attempt catches those): say so loudly.
            log.error("handling a delivery failed", exc_info=task.exception())

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event, mission = decode_work(message.body, message.headers, message.type)
        except DecodeError as exc:
            await self._dead_letter(message, str(exc), end_mission=not isinstance(exc, NotWorkError))
            return
        # Every line about this attempt, down to the handler's own, names the mission.
        with mission_context(mission_fields(mission.id, event.correlation_id, mission.type, mission.attempt)):
            if self._dropped(mission):
                await _settle(message.ack())
                return
            try:
                async with asyncio.timeout(_HOLD_LIMIT_S):
                    await self._slots.acquire(message.priority or 0)
            except (TimeoutError, SlotsClosedError):
                # Stopping, or every slot stayed taken: back to the queue, where another
                # worker may take it, well before the broker's delivery timeout would.
                await _settle(message.nack(requeue=True))
                return
            try:
                if _channel_closed(message):
                    # The broker put it back when the channel closed, while it waited: the copy
                    # it redelivers is the one to run.
                    log.info(
                        "mission %s attempt %d: its delivery's channel closed: dropped", mission.id, mission.attempt
                    )
                elif self._dropped(mission):  # cancelled or taken while it waited for its slot
                    await _settle(message.ack())
                elif self._tracing is None:
                    await self._start(mission, event, message)
                else:
                    run = self._start(mission, event, message)
                    await self._tracing.attempt(message.headers, message.routing_key or "", mission, run)
            finally:
                self._slots.release()

    def _dropped(self, mission: mission_pb2.Mission) -> bool:
        if self.attempts.is_taken(mission):
            log.info("mission %s attempt %d is cancelled or already taken: dropped", mission.id, mission.attempt)
            return True
        return False

    async def _start(
        self, mission: mission_pb2.Mission, work: events_pb2.MissionEvent, message: AbstractIncomingMessage
    ) -> Outcome | None:
        acked = False

        async def ack() -> None:
            nonlocal acked
            acked = True
            await _settle(message.ack())

        outcome = await self.attempts.run(mission, work, ack)
        if not acked:
            # Not started: on a live channel an unsettled delivery would stay ours forever.
            await _settle(message.nack(requeue=True))
        return outcome

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str, *, end_mission: bool) -> None:
        """Move a message that cannot run to the dead-letter queue, and end the mission it names.

        Settled first, in any case, so it is never redelivered and never holds up the queue
        (nor the channel, while the service's word on ending its mission is awaited).
        """
        self.undecodable += 1
        log.warning("work message %s cannot run (%s): dead-lettered", message.message_id, reason)
        try:
            await self._copy_to_dead_letters(message, reason)
        finally:
            await _settle(message.ack())
        claimed = codec.identity(message.headers)
        if claimed is not None and end_mission:
            await self._end_mission(claimed, reason, message.correlation_id)

    async def _copy_to_dead_letters(self, message: AbstractIncomingMessage, reason: str) -> None:
        try:
            await self._retrying.publisher.dead_letter(
                codec.dead_letter_copy(message, reason, self._settings.worker_id)
            )
        except Exception as exc:
            # Whatever a hostile message makes the copy fail with (its headers may not even
            # encode again), the original is settled: the queue must not stall on it.
            log.error("dead-letter copy of work message %s failed (%r): message dropped", message.message_id, exc)

    async def _end_mission(self, claimed: codec.Identity, reason: str, correlation_id: str | None) -> None:
        """DEAD_LETTERED for the mission whose work message cannot run, if the attempt the
        message asked for is this worker's: the ledger does not know it taken, and the
        service gives it to this worker (so a copy of a message whose mission runs or moved
        on elsewhere ends nothing)."""
        error = mission_pb2.MissionError(type="UndecodableWorkMessage", message=reason, retryable=False)
        mission = mission_pb2.Mission(
            id=claimed.mission_id,
            type=claimed.mission_type,
            attempt=claimed.attempt + 1,
            redrive_count=claimed.generation,
        )
        correlation_id = correlation_id or mission.id
        if self.attempts.is_taken(mission) or not await self.attempts.claim(mission, correlation_id):
            return  # started, over or ended elsewhere: this message was not its only way forward
        mission.state = mission_pb2.MISSION_STATE_FAILED
        mission.error.CopyFrom(error)
        dead = new_event(
            mission, E.EVENT_TYPE_DEAD_LETTERED, source=self._settings.worker_id, correlation_id=correlation_id
        )
        dead.dead_lettered.reason = f"work message cannot run: {reason}"
        dead.dead_lettered.last_error.CopyFrom(error)
        dead.dead_lettered.mission.CopyFrom(mission)
        await self._retrying.publish(dead)
        self._ledger.observe(dead)


def _channel_closed(message: AbstractIncomingMessage) -> bool:
    try:
        return message.channel.is_closed
    except ChannelInvalidStateError:  # what aio-pika says of a closed channel
        return True


async def _settle(settling: Awaitable[None]) -> None:
    """Ack or nack a delivery. One whose channel has since closed fails harmlessly: the
    broker redelivers it, and the ledger then knows it is taken."""
    with contextlib.suppress(BrokerUnavailableError), broker_call("settle"):
        await settling
