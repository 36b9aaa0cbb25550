"""Deliveries in, events out: runs each mission attempt.

A delivery is acked as soon as its attempt's STARTED event is confirmed: from then on
the attempt is owned by the log, not by the broker's delivery, so an hour-long mission
never meets RabbitMQ's delivery acknowledgement timeout. If the worker dies before
STARTED, the delivery is redelivered; if it dies after, its heartbeats stop and the
service declares the attempt lost (``WorkerLost``) and retries it. Work that the ledger
knows to be taken (started, over, cancelled or finished) is acked and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from missions import codec
from missions.amqp import broker_call, close_channel
from missions.backoff import full_jitter
from missions.errors import BrokerUnavailableError, DecodeError
from missions.events import new_event
from missions.logs import mission_context, mission_fields
from missions.outbox import Outbox
from missions.outcomes import Outcome, outcome_events
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2
from worker_service.context import MissionContext
from worker_service.handlers.registry import HandlerRegistry
from worker_service.ledger import MissionLedger
from worker_service.metrics import WorkerMetrics
from worker_service.runner import run_attempt
from worker_service.settings import WorkerSettings

if TYPE_CHECKING:
    from missions.tracing import Tracing

__all__ = ["MissionConsumer", "NotWorkError", "decode_work"]

log = logging.getLogger(__name__)

E = events_pb2

_INT32_MAX = 2**31 - 1


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
    if not 0 <= source.attempt < _INT32_MAX or source.redrive_count < 0:
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
    """Consumes the work queue with prefetch = concurrency and runs each delivery."""

    def __init__(
        self,
        settings: WorkerSettings,
        connection: AbstractConnection,
        outbox: Outbox,
        registry: HandlerRegistry,
        ledger: MissionLedger,
        session: str,
        metrics: WorkerMetrics,
        tracing: Tracing | None = None,
    ) -> None:
        """``tracing``: run each attempt in a span (None: tracing off)."""
        self._settings = settings
        self._tracing = tracing
        self._metrics = metrics
        self._connection = connection
        self._outbox = outbox
        self._registry = registry
        self._ledger = ledger
        self._names = Topology(settings.namespace)
        self._tasks: set[asyncio.Task[None]] = set()
        # By (mission id, attempt): a worker may run an attempt the service declared lost
        # (it was cut off) next to the retry of the same mission.
        self._contexts: dict[tuple[str, int], MissionContext] = {}
        self.session = session
        self.consuming = asyncio.Event()  # set once the consumer is registered
        self.last_delivery_time: float | None = None
        self.finished = 0
        self.undecodable = 0  # work messages dead-lettered because they could not be decoded
        self._dead_letters: AbstractChannel | None = None
        ledger.on_cancel(self._cancel)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain: see WorkerSettings.drain_timeout."""
        channel = await self._connection.channel()
        try:
            self._dead_letters = await self._connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=self._settings.concurrency)
            queue = await channel.get_queue(self._names.work_queue)
            tag = await queue.consume(self._on_delivery)
            self.consuming.set()
            log.info(
                "worker %s consuming %s (concurrency %d, handlers: %s)",
                self._settings.worker_id,
                self._names.work_queue,
                self._settings.concurrency,
                ", ".join(self._registry.names),
            )
            await stop.wait()
            await queue.cancel(tag)
            await self._drain()
        finally:
            # A delivery not yet started (unacked) goes back to the queue when the channel closes.
            await close_channel(channel)
            if self._dead_letters is not None:
                await close_channel(self._dead_letters)

    def _cancel(self, event: events_pb2.MissionEvent) -> None:
        for (mission_id, _), ctx in self._contexts.items():
            if mission_id == event.mission_id and not ctx.cancelled.is_set():
                log.info(
                    "mission %s cancelled while running: %s",
                    mission_id,
                    event.cancelled.reason or "-",
                    extra=mission_fields(mission_id, event.correlation_id, event.mission_type, ctx.attempt),
                )
                ctx.cancelled.set()

    async def _drain(self) -> None:
        """Let running missions finish for up to the drain timeout, then interrupt the rest.

        Interrupted attempts end with the retryable error ``Interrupted`` (published like
        any outcome, so another worker retries them); nothing is left unaccounted for.
        """
        if not self._tasks:
            return
        log.info("draining %d running missions (up to %s)", len(self._tasks), self._settings.drain_timeout)
        _, pending = await asyncio.wait(self._tasks, timeout=self._settings.drain_timeout.total_seconds())
        if pending:
            log.warning("%d missions still running after the drain timeout: interrupting them", len(pending))
            for ctx in self._contexts.values():
                ctx.cancelled.set()
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
            if (mission.id, mission.attempt) in self._contexts or self._ledger.is_taken(mission, self.session):
                log.info("mission %s attempt %d is cancelled or already taken: dropped", mission.id, mission.attempt)
                await _settle(message.ack())
                return
            if self._tracing is None:
                await self._execute(mission, event, message)
            else:
                run = self._execute(mission, event, message)
                await self._tracing.attempt(message.headers, message.routing_key or "", mission, run)

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str, *, end_mission: bool) -> None:
        """Move a message that cannot run to the dead-letter queue, and end the mission it names.

        Settled in any case, so it is never redelivered and never holds up the queue.
        """
        self.undecodable += 1
        log.warning("work message %s cannot run (%s): dead-lettered", message.message_id, reason)
        claimed = codec.identity(message.headers)
        try:
            if claimed is not None and end_mission:
                await self._end_mission(claimed, reason, message.correlation_id)
            await self._copy_to_dead_letters(message, reason)
        finally:
            await _settle(message.ack())

    async def _copy_to_dead_letters(self, message: AbstractIncomingMessage, reason: str) -> None:
        assert self._dead_letters is not None
        try:
            copy = codec.dead_letter_copy(message, reason, self._settings.worker_id)
            with broker_call("not confirmed"):
                await self._dead_letters.default_exchange.publish(copy, routing_key=self._names.dead_letter_queue)
        except Exception as exc:
            # Whatever a hostile message makes the copy fail with (its headers may not even
            # encode again), the original is settled: the queue must not stall on it.
            log.error("dead-letter copy of work message %s failed (%r): message dropped", message.message_id, exc)

    async def _end_mission(self, claimed: codec.Identity, reason: str, correlation_id: str | None) -> None:
        """DEAD_LETTERED for the mission whose work message cannot run, unless the mission moved on."""
        error = mission_pb2.MissionError(type="UndecodableWorkMessage", message=reason, retryable=False)
        mission = mission_pb2.Mission(
            id=claimed.mission_id,
            type=claimed.mission_type,
            state=mission_pb2.MISSION_STATE_FAILED,
            attempt=claimed.attempt,
            redrive_count=claimed.generation,
            error=error,
        )
        # The attempt the message asked for; no session: even our own running attempt counts.
        next_attempt = mission_pb2.Mission(id=mission.id, attempt=mission.attempt + 1, redrive_count=claimed.generation)
        if self._ledger.is_taken(next_attempt):
            return  # started, over or ended elsewhere: this message was not its only way forward
        dead = new_event(
            mission,
            E.EVENT_TYPE_DEAD_LETTERED,
            source=self._settings.worker_id,
            correlation_id=correlation_id or mission.id,
        )
        dead.dead_lettered.reason = f"work message cannot run: {reason}"
        dead.dead_lettered.last_error.CopyFrom(error)
        dead.dead_lettered.mission.CopyFrom(mission)
        await self._outbox.publish(dead)
        self._ledger.observe(dead)

    def _factory(
        self, mission: mission_pb2.Mission, correlation_id: str
    ) -> Callable[[events_pb2.EventType.ValueType], events_pb2.MissionEvent]:
        def event(kind: events_pb2.EventType.ValueType) -> events_pb2.MissionEvent:
            return new_event(mission, kind, source=self._settings.worker_id, correlation_id=correlation_id)

        return event

    async def _execute(
        self, mission: mission_pb2.Mission, work: events_pb2.MissionEvent, message: AbstractIncomingMessage
    ) -> Outcome | None:
        """Run the attempt and publish its outcome; the outcome, or None when it did not start."""
        settings = self._settings
        correlation_id = work.correlation_id
        event = self._factory(mission, correlation_id)

        async def progress(fraction: float, text: str) -> None:
            update = event(E.EVENT_TYPE_PROGRESS)
            update.progress.fraction = fraction
            update.progress.message = text
            await self._outbox.publish(update)

        ctx = MissionContext(
            mission_id=mission.id,
            mission_type=mission.type,
            attempt=mission.attempt,
            max_attempts=mission.max_attempts,
            labels=dict(mission.labels),
            _progress=progress,
        )
        # Registered until the outcome is out: a copy of this work message (redelivered, or
        # dispatched again) that arrives meanwhile must find the attempt taken, and the
        # ledger learns that it is over only once the outcome is published.
        self._contexts[mission.id, mission.attempt] = ctx
        try:
            started = event(E.EVENT_TYPE_STARTED)
            started.started.worker_id = settings.worker_id
            started.started.worker_session = self.session
            self._ledger.enter(mission)
            try:
                # Once, not through the outbox: unconfirmed, the attempt must not run, since
                # the delivery may already be on its way to another worker.
                await self._outbox.publish_once(started)
            except BrokerUnavailableError as exc:
                log.warning("mission %s not started (%s); handing it back for redelivery", mission.id, exc)
                # On a live channel an unsettled delivery would stay ours forever.
                await _settle(message.nack(requeue=True))
                return None
            self._ledger.observe(started)
            await _settle(message.ack())
            self._metrics.attempt_started(work, started)
            log.info("mission %s (%s) attempt %d started", mission.id, mission.type, mission.attempt)
            timeout = mission.timeout.ToTimedelta() if mission.HasField("timeout") else timedelta(0)
            outcome = await run_attempt(
                self._registry, ctx, mission.payload, timeout or settings.default_timeout, settings.cancel_grace
            )
            self._metrics.attempt_finished(mission.type, outcome)
            if self._ledger.is_over(mission):
                log.info(
                    "mission %s attempt %d was ended elsewhere (cancelled or lost): outcome dropped",
                    mission.id,
                    mission.attempt,
                )
                return outcome
            await self._publish_outcome(mission, correlation_id, outcome)
            return outcome
        finally:
            del self._contexts[mission.id, mission.attempt]

    async def _publish_outcome(self, mission: mission_pb2.Mission, correlation_id: str, outcome: Outcome) -> None:
        settings = self._settings
        events = outcome_events(
            mission,
            outcome,
            self._factory(mission, correlation_id),
            lambda failed: full_jitter(failed, settings.retry_base, settings.retry_max),
        )

        async def still_wanted() -> bool:
            # After an outage, first read what the control stream says happened meanwhile.
            await self._ledger.caught_up.wait()
            return not self._ledger.is_over(mission)

        for follow_up in events:
            if not await self._outbox.publish(follow_up, priority=mission.priority, wanted=still_wanted):
                break
            # What we published is known at once, before the control stream echoes it.
            self._ledger.observe(follow_up)
        self.finished += 1


async def _settle(settling: Awaitable[None]) -> None:
    """Ack or nack a delivery. One whose channel has since closed fails harmlessly: the
    broker redelivers it, and the ledger then knows it is taken."""
    with contextlib.suppress(BrokerUnavailableError), broker_call("settle"):
        await settling
