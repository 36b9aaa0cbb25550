"""One attempt of a mission, from STARTED to its outcome events.

The delivery that brought the work is settled by the caller (worker_service/consumer.py):
``run`` calls ``started`` once STARTED is confirmed, which is when the delivery is acked.
From then on the attempt is owned by the log, not by the broker's delivery, so an
hour-long mission never meets RabbitMQ's delivery acknowledgement timeout. If the worker
dies after STARTED, its heartbeats stop and the service declares the attempt lost
(``WorkerLost``) and retries it.

The handler runs only once the service says the log shows this STARTED as the
attempt's first (worker_service/verdicts.py): copies of one work message that two
workers take in the same instant never both run. A worker told otherwise withdraws its
STARTED (a STARTED with ``withdrawn`` set), so the service knows it does not run the
attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from missions.backoff import full_jitter
from missions.events import new_event, reissued
from missions.logs import mission_fields
from missions.outcomes import Outcome, outcome_events
from missions.retrying_publisher import RetryingPublisher
from missions.v1 import events_pb2, mission_pb2
from worker_service.context import MissionContext
from worker_service.handlers.registry import HandlerRegistry
from worker_service.ledger import MissionLedger
from worker_service.metrics import WorkerMetrics
from worker_service.runner import run_attempt
from worker_service.settings import WorkerSettings
from worker_service.verdicts import Verdicts

__all__ = ["Attempts"]

log = logging.getLogger(__name__)

E = events_pb2


class Attempts:
    """Runs attempts and knows the ones running, to cancel or interrupt them."""

    def __init__(
        self,
        settings: WorkerSettings,
        retrying: RetryingPublisher,
        registry: HandlerRegistry,
        ledger: MissionLedger,
        verdicts: Verdicts,
        session: str,
        metrics: WorkerMetrics,
    ) -> None:
        self._settings = settings
        self._retrying = retrying
        self._registry = registry
        self._ledger = ledger
        self._verdicts = verdicts
        self._metrics = metrics
        self.session = session
        # By (mission id, attempt): a worker may run an attempt the service declared lost
        # (it was cut off) next to the retry of the same mission.
        self._contexts: dict[tuple[str, int], MissionContext] = {}
        # The service's answer each attempt still waits for, by (mission id, attempt):
        # cancelled to stop waiting (stopping, or the mission was cancelled).
        self._answers: dict[tuple[str, int], asyncio.Future[bool]] = {}
        self.finished = 0
        ledger.on_cancel(self._cancel)

    @property
    def awaiting_word(self) -> int:
        """Attempts whose STARTED is published, waiting for the service's word."""
        return len(self._answers)

    def is_taken(self, mission: mission_pb2.Mission) -> bool:
        """Whether this attempt must not run: it runs here already, this worker is asking the
        service for it (``claim``), or the ledger says it is taken."""
        key = (mission.id, mission.attempt)
        return key in self._contexts or key in self._answers or self._ledger.is_taken(mission)

    def interrupt(self) -> None:
        """Set ``ctx.cancelled`` of every running attempt (the drain timeout passed)."""
        for ctx in self._contexts.values():
            ctx.cancelled.set()
        for answer in self._answers.values():
            answer.cancel()

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
        for (mission_id, _), answer in self._answers.items():
            if mission_id == event.mission_id:
                answer.cancel()

    def _factory(
        self, mission: mission_pb2.Mission, correlation_id: str
    ) -> Callable[[events_pb2.EventType.ValueType], events_pb2.MissionEvent]:
        def event(kind: events_pb2.EventType.ValueType) -> events_pb2.MissionEvent:
            return new_event(mission, kind, source=self._settings.worker_id, correlation_id=correlation_id)

        return event

    async def run(
        self, mission: mission_pb2.Mission, work: events_pb2.MissionEvent, started: Callable[[], Awaitable[None]]
    ) -> Outcome | None:
        """Run the attempt and publish its outcome; the outcome, or None when it did not run:
        stopped before its STARTED was confirmed (``started`` not called: the caller hands
        the delivery back), stopped before the service's word, or refused (another
        worker's STARTED of the attempt came first, or the mission moved on)."""
        settings = self._settings
        correlation_id = work.correlation_id
        event = self._factory(mission, correlation_id)

        async def progress(fraction: float, text: str) -> None:
            update = event(E.EVENT_TYPE_PROGRESS)
            update.progress.fraction = fraction
            update.progress.message = text
            await self._retrying.publish(update)

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
        self._ledger.enter(mission)
        try:
            begun = self._started(mission, correlation_id)
            if not await self._ask(begun, started):
                return None
            self._metrics.attempt_started(work, begun)
            log.debug("mission %s (%s) attempt %d started", mission.id, mission.type, mission.attempt)
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
            self._ledger.leave(mission)

    async def claim(self, mission: mission_pb2.Mission, correlation_id: str) -> bool:
        """Whether the log gives ``mission``'s attempt to this worker, asked without running
        it (for a work message that cannot run, before ending its mission): STARTED through
        the retrying publisher, then the service's word, as for any attempt."""
        return await self._ask(self._started(mission, correlation_id))

    def _started(self, mission: mission_pb2.Mission, correlation_id: str) -> events_pb2.MissionEvent:
        begun = self._factory(mission, correlation_id)(E.EVENT_TYPE_STARTED)
        begun.started.worker_id = self._settings.worker_id
        begun.started.worker_session = self.session
        return begun

    async def _ask(
        self, begun: events_pb2.MissionEvent, published: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Whether this worker runs ``begun``'s attempt: publish the STARTED (retried until
        confirmed: one that reached the log with its confirm lost is answered too), call
        ``published``, then wait for the service's word; a STARTED refused is withdrawn.
        False as soon as the worker stops (``interrupt``) or the mission is cancelled, even
        while a publish waits for the broker."""
        key = (begun.mission_id, begun.attempt)
        answer = self._answers[key] = self._verdicts.expect(begun.id)

        async def still_asking() -> bool:
            return not answer.done()  # answered (a lost confirm's STARTED reached the log), or stopped

        async def ask_again(again: events_pb2.MissionEvent) -> bool:
            return await self._retrying.publish(again, wanted=still_asking)

        try:
            if not await ask_again(begun) and answer.cancelled():
                return False
            if published is not None:
                await published()
            runs = await self._verdicts.wait(begun, answer, ask_again)
        finally:
            if self._answers.get(key) is answer:
                del self._answers[key]
            answer.cancel()
        if runs is None:
            # Stopping or cancelled before the service answered: not run. If it was this
            # worker's to run, the service declares it lost once this session ends.
            log.info("mission %s attempt %d: stopped waiting for the service's word", begun.mission_id, begun.attempt)
            return False
        if not runs:
            await self._withdraw(begun)
        return runs

    async def _withdraw(self, begun: events_pb2.MissionEvent) -> None:
        log.info(
            "mission %s attempt %d: another worker's STARTED came first, or the mission moved on; not running it here",
            begun.mission_id,
            begun.attempt,
        )
        withdrawal = reissued(begun)
        withdrawal.started.withdrawn = True
        await self._retrying.publish(withdrawal)

    async def _publish_outcome(self, mission: mission_pb2.Mission, correlation_id: str, outcome: Outcome) -> None:
        settings = self._settings
        events = outcome_events(
            mission,
            outcome,
            self._factory(mission, correlation_id),
            lambda failed: full_jitter(failed, settings.retry_base, settings.retry_max),
        )

        async def still_wanted() -> bool:
            # After an outage, first read what the service decided meanwhile (control stream).
            await self._ledger.caught_up.wait()
            return not self._ledger.is_over(mission)

        for follow_up in events:
            if not await self._retrying.publish(follow_up, priority=mission.priority, wanted=still_wanted):
                break
            # What we published is known here at once (the control stream never carries it).
            self._ledger.observe(follow_up)
        self.finished += 1
