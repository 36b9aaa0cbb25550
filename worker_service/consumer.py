"""Deliveries in, events out: runs each mission attempt and settles its delivery once.

A delivery is acked only after the attempt's terminal events (COMPLETED; FAILED plus
RETRYING or DEAD_LETTERED) are confirmed by the broker, so a crash at any point leaves
the delivery to be redelivered: execution is at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from missions import codec
from missions.backoff import full_jitter
from missions.errors import BrokerUnavailableError, DecodeError
from missions.eventlog import EventPublisher
from missions.events import duration, new_event
from missions.topology import Topology
from missions.v1 import events_pb2, mission_pb2
from worker_service.context import MissionContext
from worker_service.handlers.registry import HandlerRegistry
from worker_service.runner import Outcome, run_attempt
from worker_service.settings import WorkerSettings

__all__ = ["MissionConsumer"]

log = logging.getLogger(__name__)

E = events_pb2

_EventFactory = Callable[[events_pb2.EventType.ValueType], events_pb2.MissionEvent]


def _runnable(event: events_pb2.MissionEvent) -> mission_pb2.Mission:
    """The mission a work-queue message asks to run, with ``attempt`` set to the new attempt."""
    if event.type == E.EVENT_TYPE_CREATED:
        source = event.created.mission
    elif event.type == E.EVENT_TYPE_RETRYING:
        source = event.retrying.mission
    else:
        raise DecodeError(f"{E.EventType.Name(event.type)} is not a runnable event")
    mission = mission_pb2.Mission()
    mission.CopyFrom(source)
    mission.attempt += 1
    return mission


class MissionConsumer:
    """Consumes the work queue with prefetch = concurrency and runs each delivery."""

    def __init__(
        self,
        settings: WorkerSettings,
        connection: AbstractConnection,
        publisher: EventPublisher,
        registry: HandlerRegistry,
    ) -> None:
        self._settings = settings
        self._connection = connection
        self._publisher = publisher
        self._registry = registry
        self._names = Topology(settings.namespace)
        self._running: dict[asyncio.Task[None], MissionContext | None] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain: see WorkerSettings.drain_timeout."""
        channel = await self._connection.channel()
        try:
            await channel.set_qos(prefetch_count=self._settings.concurrency)
            queue = await channel.get_queue(self._names.work_queue)
            tag = await queue.consume(self._on_delivery)
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
            # Unacked deliveries go back to the queue when the channel closes.
            if not channel.is_closed:
                await channel.close()

    async def _drain(self) -> None:
        if not self._running:
            return
        log.info("draining %d running missions (up to %s)", len(self._running), self._settings.drain_timeout)
        _, pending = await asyncio.wait(self._running, timeout=self._settings.drain_timeout.total_seconds())
        for task in pending:
            ctx = self._running.get(task)
            if ctx is not None:
                ctx.cancelled.set()
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _on_delivery(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._handle(message))
        self._running[task] = None
        task.add_done_callback(self._running.pop)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = codec.decode(message.body, message.headers, message.type)
            mission = _runnable(event)
        except DecodeError as exc:
            log.error("rejecting undecodable work message %s: %s", message.message_id, exc)
            await message.reject(requeue=False)
            return
        try:
            await self._execute(mission, event.correlation_id, message)
            await message.ack()
        except BrokerUnavailableError as exc:
            log.warning("mission %s: %s; leaving the delivery to be redelivered", mission.id, exc)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)

    async def _execute(
        self, mission: mission_pb2.Mission, correlation_id: str, message: AbstractIncomingMessage
    ) -> None:
        settings = self._settings

        def event(kind: events_pb2.EventType.ValueType) -> events_pb2.MissionEvent:
            return new_event(mission, kind, source=settings.worker_id, correlation_id=correlation_id)

        async def progress(fraction: float, text: str) -> None:
            update = event(E.EVENT_TYPE_PROGRESS)
            update.progress.fraction = fraction
            update.progress.message = text
            await self._publisher.publish(update)

        ctx = MissionContext(
            mission_id=mission.id,
            mission_type=mission.type,
            attempt=mission.attempt,
            max_attempts=mission.max_attempts,
            labels=dict(mission.labels),
            _progress=progress,
        )
        self._running[asyncio.current_task()] = ctx  # type: ignore[index]
        started = event(E.EVENT_TYPE_STARTED)
        started.started.worker_id = settings.worker_id
        await self._publisher.publish(started)
        log.info("mission %s (%s) attempt %d started", mission.id, mission.type, mission.attempt)
        timeout = mission.timeout.ToTimedelta() if mission.HasField("timeout") else timedelta(0)
        outcome = await run_attempt(self._registry, ctx, mission.payload, timeout or settings.default_timeout)
        for follow_up in self._outcome_events(mission, outcome, event):
            await self._publisher.publish(follow_up, priority=mission.priority)

    def _outcome_events(
        self, mission: mission_pb2.Mission, outcome: Outcome, event: _EventFactory
    ) -> list[events_pb2.MissionEvent]:
        """COMPLETED; or FAILED then RETRYING; or FAILED then DEAD_LETTERED."""
        if outcome.result is not None:
            done = event(E.EVENT_TYPE_COMPLETED)
            done.completed.result.CopyFrom(outcome.result)
            done.completed.duration.CopyFrom(duration(outcome.duration))
            log.info("mission %s attempt %d succeeded in %s", mission.id, mission.attempt, outcome.duration)
            return [done]
        assert outcome.error is not None
        will_retry = outcome.error.retryable and mission.attempt < mission.max_attempts
        failed = event(E.EVENT_TYPE_FAILED)
        failed.failed.error.CopyFrom(outcome.error)
        failed.failed.will_retry = will_retry
        failed.failed.duration.CopyFrom(duration(outcome.duration))
        log.info(
            "mission %s attempt %d failed (%s: %s)%s",
            mission.id,
            mission.attempt,
            outcome.error.type,
            outcome.error.message,
            "; will retry" if will_retry else "",
        )
        if will_retry:
            delay = full_jitter(mission.attempt, self._settings.retry_base, self._settings.retry_max)
            retry = event(E.EVENT_TYPE_RETRYING)
            retry.retrying.error.CopyFrom(outcome.error)
            retry.retrying.delay.CopyFrom(duration(delay))
            retry.retrying.next_attempt_time.FromDatetime(retry.time.ToDatetime() + delay)
            retry.retrying.mission.CopyFrom(mission)
            retry.retrying.mission.state = mission_pb2.MISSION_STATE_RETRYING
            retry.retrying.mission.error.CopyFrom(outcome.error)
            return [failed, retry]
        dead = event(E.EVENT_TYPE_DEAD_LETTERED)
        reason = "attempts exhausted" if outcome.error.retryable else "non-retryable error"
        dead.dead_lettered.reason = f"{reason} after attempt {mission.attempt} of {mission.max_attempts}"
        dead.dead_lettered.last_error.CopyFrom(outcome.error)
        dead.dead_lettered.mission.CopyFrom(mission)
        dead.dead_lettered.mission.state = mission_pb2.MISSION_STATE_FAILED
        dead.dead_lettered.mission.error.CopyFrom(outcome.error)
        return [failed, dead]
