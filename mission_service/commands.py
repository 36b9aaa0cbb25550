"""The write side of MissionService, free of gRPC: submit, cancel and redrive missions by
appending their events to the log (and their work messages to the work queues)."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mission_service import validation
from mission_service.dead_letters import DeadLetters
from mission_service.dispatch import Dispatcher
from mission_service.follower import LogFollower
from mission_service.limits import Limits
from mission_service.queries import find_mission
from mission_service.store import MissionStore
from mission_service.tokens import Principal
from missions.errors import (
    AlreadyExistsError,
    BrokerUnavailableError,
    FailedPreconditionError,
    InvalidArgumentError,
    PermissionDeniedError,
)
from missions.eventlog import EventPublisher
from missions.events import TERMINAL_STATES, is_scheduled, new_event, now
from missions.logs import mission_fields
from missions.metrics import PublishedEvents
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2

__all__ = ["CommandsConfig", "MissionCommands"]

M = mission_pb2

log = logging.getLogger(__name__)

# Ids derived from idempotency keys: uuid5(_KEY_NAMESPACE, "<namespace>/<key>"), so every
# replica of one namespace maps a key to the same mission.
_KEY_NAMESPACE = uuid.UUID("6f0b2a8e-3c1d-5b7a-9e4f-2d8c1a6b3e90")

# Dead letters a bulk operation handles at once, and the ids its answer names.
_BULK_PAGE = 100
_SHOWN_IDS = 1000


@dataclass(frozen=True, slots=True)
class CommandsConfig:
    namespace: str
    source: str
    limits: Limits
    read_your_writes_timeout: float = 5.0
    # How long SubmitMission and RedriveMission wait for their event and its work message
    # while the broker confirms nothing before answering UNAVAILABLE (the work message
    # still follows once it can).
    queue_timeout: float = 5.0


class MissionCommands:
    """Changes missions through the log; each returns once this replica's store shows the change."""

    def __init__(
        self,
        config: CommandsConfig,
        publisher: EventPublisher,
        dispatcher: Dispatcher,
        store: MissionStore,
        follower: LogFollower,
        published: PublishedEvents | None = None,
    ) -> None:
        self._config = config
        self._published = published
        self._publisher = publisher
        self._dispatcher = dispatcher
        self._store = store
        self._follower = follower
        self._creating: dict[str, asyncio.Future[mission_pb2.Mission]] = {}  # by mission id

    def mission_id_for(self, idempotency_key: str) -> str:
        if not idempotency_key:
            return str(uuid.uuid4())
        return str(uuid.uuid5(_KEY_NAMESPACE, f"{self._config.namespace}/{idempotency_key}"))

    async def submit(
        self, request: mission_service_pb2.SubmitMissionRequest, correlation_id: str, submitted_by: str = ""
    ) -> mission_pb2.Mission:
        limits = self._config.limits
        validation.validate_submission(request, limits)
        mission = mission_pb2.Mission(
            id=self.mission_id_for(request.idempotency_key),
            type=request.type,
            payload=request.payload,
            priority=request.priority or mission_pb2.PRIORITY_NORMAL,
            state=mission_pb2.MISSION_STATE_QUEUED,
            max_attempts=request.max_attempts or limits.default_max_attempts,
            labels=request.labels,
            idempotency_key=request.idempotency_key,
            create_time=now(),
            submitted_by=submitted_by,
            correlation_id=correlation_id,
        )
        if request.HasField("timeout"):
            mission.timeout.CopyFrom(request.timeout)
        due = validation.due_time(request, mission.create_time, limits)
        if due is not None:
            mission.due_time.CopyFrom(due)
            if is_scheduled(mission):
                mission.state = M.MISSION_STATE_SCHEDULED
        if not request.idempotency_key:
            return await self._create(mission, correlation_id)
        existing = self._store.get(mission.id)
        if existing is not None:
            await self._dispatch_again(_same_submission(existing, mission, request))
            return existing
        return _same_submission(await self._create_once(mission, correlation_id), mission, request)

    async def _create_once(self, mission: mission_pb2.Mission, correlation_id: str) -> mission_pb2.Mission:
        """``_create``, shared by the concurrent submissions of one key on this replica: one
        append, one result (the mission the log kept) for all of them."""
        creating = self._creating.get(mission.id)
        if creating is None:
            creating = asyncio.ensure_future(self._create(mission, correlation_id))
            self._creating[mission.id] = creating
            creating.add_done_callback(functools.partial(self._created, mission.id))
        return await asyncio.shield(creating)

    def _created(self, mission_id: str, creating: asyncio.Future[mission_pb2.Mission]) -> None:
        del self._creating[mission_id]
        if not creating.cancelled():
            creating.exception()  # retrieved here too: every caller may have gone

    async def _create(self, mission: mission_pb2.Mission, correlation_id: str) -> mission_pb2.Mission:
        """Append the mission's CREATED and dispatch its work message; the mission the log kept
        (another one with the same id when a concurrent submission's CREATED came first)."""
        event = _work(mission, self._config.source, correlation_id)
        # A mission due later gets its work message when it is due (Scheduler, fire).
        scheduled = is_scheduled(mission)
        await self._append(event, priority=mission.priority, dispatch=not scheduled)
        log.debug(
            "mission %s (%s) %s",
            mission.id,
            mission.type,
            "scheduled" if scheduled else "queued",
            extra=mission_fields(mission.id, correlation_id, mission.type),
        )
        return self._store.get(mission.id) or mission

    async def submit_many(
        self,
        requests: Sequence[mission_service_pb2.SubmitMissionRequest],
        correlation_id: str | None,
        submitted_by: str = "",
    ) -> list[mission_pb2.Mission | BaseException]:
        """Submit each request as ``submit`` would, concurrently (their confirms overlap);
        each result is the mission or what ``submit`` raised. Without a ``correlation_id``
        each mission gets its own."""
        validation.validate_batch(requests, self._config.limits)
        submissions = (self.submit(request, correlation_id or uuid.uuid4().hex, submitted_by) for request in requests)
        return await asyncio.gather(*submissions, return_exceptions=True)

    async def publish(self, event: events_pb2.MissionEvent, priority: int | None = None) -> None:
        """Publish ``event`` (confirmed) and count it."""
        await self._publisher.publish(event, priority=priority)
        if self._published is not None:
            self._published.count(event)

    async def append(self, event: events_pb2.MissionEvent, priority: int | None = None) -> bool:
        """Publish ``event`` and wait (at most 5 s) until this replica's store reflects it: True
        once it took effect, False when the store recorded it as a duplicate or the wait ran out."""
        applied = self._follower.expect(event.id)
        try:
            await self.publish(event, priority)
            return await asyncio.wait_for(asyncio.shield(applied), self._config.read_your_writes_timeout)
        except TimeoutError:
            return False
        finally:
            applied.cancel()

    async def _append(
        self, event: events_pb2.MissionEvent, priority: int | None = None, *, dispatch: bool = False
    ) -> None:
        """Publish ``event``, then (``dispatch``) its work message, and wait until this
        replica's store reflects it (bounded: a write without a work message returns after
        5 s anyway; one with a work message raises BrokerUnavailableError once the broker
        has confirmed nothing for ``queue_timeout``, or this replica's log has not shown
        the event within a minute)."""
        if dispatch:
            queuing = asyncio.ensure_future(self._dispatcher.append(event, priority, self.publish))
            try:
                await self._while_confirming(queuing, event.mission_id)
            finally:
                queuing.cancel()  # a client gone, or told UNAVAILABLE: the dispatch goes on without it
            return
        await self.append(event, priority)

    async def _while_confirming(self, queuing: asyncio.Future[None], mission_id: str) -> None:
        """Wait for ``queuing`` for as long as the broker keeps confirming this replica's
        publishes; BrokerUnavailableError after ``queue_timeout`` with no confirm at all.

        A client must hear promptly when the broker went away, but a busy replica (many
        SubmitMissions batches at once) is slow, not away: its callers wait their turn.
        """
        confirms = self._publisher.confirms
        while not (await asyncio.wait({queuing}, timeout=self._config.queue_timeout))[0]:
            if self._publisher.confirms == confirms:
                raise BrokerUnavailableError(
                    f"mission {mission_id} not queued: the broker confirmed nothing this replica published"
                    f" for {self._config.queue_timeout:g} s (the broker, or this replica's log, is slow or"
                    " away); it may exist and run: retry with the same idempotency key"
                )
            confirms = self._publisher.confirms
        queuing.result()

    async def _dispatch_again(self, mission: mission_pb2.Mission) -> None:
        """Dispatch a retried submission's mission again if it has never started: the replica
        that took the first may have died between the log's confirm and the work message.
        A copy never runs an attempt twice: workers run an attempt only for the first
        STARTED of it, as the service tells them (worker_service/verdicts.py)."""
        if mission.state != M.MISSION_STATE_QUEUED or mission.attempt:
            return
        await self._dispatcher.dispatch(_work(mission, self._config.source, _correlation(mission)), mission.priority)

    async def fire(self, mission: mission_pb2.Mission) -> None:
        """Queue a SCHEDULED mission that is due: its DUE, then, once this replica's log shows
        that DUE took effect, its work message. A DUE that the log shows second (another
        replica fired the mission too, or it was cancelled meanwhile) is a duplicate and gets
        no work message, so the mission gets one."""
        correlation_id = _correlation(mission)
        due = new_event(mission, events_pb2.EVENT_TYPE_DUE, source=self._config.source, correlation_id=correlation_id)
        due.due.due_time.CopyFrom(mission.due_time)
        work = _work(mission, self._config.source, correlation_id)
        await self._dispatcher.append(due, mission.priority, self.publish, work=work)
        log.debug(
            "mission %s (%s) due",
            mission.id,
            mission.type,
            extra=mission_fields(mission.id, correlation_id, mission.type),
        )

    async def cancel(self, request: mission_service_pb2.CancelMissionRequest, caller: Principal) -> mission_pb2.Mission:
        """Cancel a queued, retrying or running mission; idempotent for a cancelled one.

        Only an admin may cancel another principal's mission. The CANCELLED event is the
        decision: it reaches the log and, through the control stream, every worker, which
        drop the mission's queued work and interrupt a running attempt.
        """
        mission = find_mission(self._store, request.mission_id, self._config.limits)
        if not caller.is_admin and mission.submitted_by != caller.name:
            raise PermissionDeniedError(
                f"principal {caller.name!r} may only cancel its own missions;"
                f" mission {request.mission_id} was submitted by {mission.submitted_by!r}",
                reason="NOT_MISSION_OWNER",
            )
        if mission.state == M.MISSION_STATE_CANCELLED:
            return mission
        if mission.state in TERMINAL_STATES:
            state = M.MissionState.Name(mission.state)
            raise FailedPreconditionError(f"mission {mission.id} has already finished ({state})")
        event = new_event(
            mission, events_pb2.EVENT_TYPE_CANCELLED, source=self._config.source, correlation_id=_correlation(mission)
        )
        event.cancelled.reason = request.reason[:1024]
        event.cancelled.cancelled_by = caller.name
        event.cancelled.previous_state = mission.state
        await self._append(event)
        log.info(
            "mission %s cancelled by %s",
            mission.id,
            caller.name,
            extra=mission_fields(mission.id, event.correlation_id, mission.type),
        )
        return self._store.get(mission.id) or mission

    async def redrive(
        self, request: mission_service_pb2.RedriveMissionRequest, requested_by: str
    ) -> mission_pb2.Mission:
        """Queue a dead-lettered mission again with a fresh attempt budget."""
        self._check_budget(request.max_attempts)
        mission = find_mission(self._store, request.mission_id, self._config.limits)
        if not mission.dead_lettered:
            state = M.MissionState.Name(mission.state)
            raise FailedPreconditionError(
                f"mission {mission.id} is not dead-lettered ({state})", reason="NOT_DEAD_LETTERED"
            )
        return await self._redrive(mission, request.max_attempts, requested_by)

    def _check_budget(self, max_attempts: int) -> None:
        limits = self._config.limits
        if not 0 <= max_attempts <= limits.max_max_attempts:
            raise InvalidArgumentError(
                "max_attempts", f"must be between 0 (the mission's own) and {limits.max_max_attempts}"
            )

    async def _redrive(self, mission: mission_pb2.Mission, max_attempts: int, requested_by: str) -> mission_pb2.Mission:
        fresh = M.Mission()
        fresh.CopyFrom(mission)
        fresh.state = M.MISSION_STATE_QUEUED
        fresh.attempt = 0
        fresh.max_attempts = max_attempts or mission.max_attempts
        fresh.redrive_count = mission.redrive_count + 1
        fresh.dead_lettered = False
        for name in ("error", "result", "start_time", "end_time"):
            fresh.ClearField(name)
        event = _work(fresh, self._config.source, _correlation(mission))
        event.redriven.requested_by = requested_by
        await self._append(event, priority=fresh.priority, dispatch=True)
        log.info(
            "mission %s redriven by %s (%d attempts)",
            mission.id,
            requested_by,
            fresh.max_attempts,
            extra=mission_fields(mission.id, event.correlation_id, mission.type),
        )
        return self._store.get(mission.id) or fresh

    async def redrive_dead_letters(
        self, request: mission_service_pb2.RedriveDeadLettersRequest, requested_by: str
    ) -> tuple[int, list[str]]:
        """Redrive every dead letter the filter takes (or, dry, only find them): how many,
        and the ids of the first ``_SHOWN_IDS``."""
        self._check_budget(request.max_attempts)

        async def redrive(mission: mission_pb2.Mission) -> None:
            await self._redrive(mission, request.max_attempts, requested_by)

        return await self._each_dead_letter("redriven", request.filter, request.dry_run, redrive, requested_by)

    async def purge_dead_letters(
        self, request: mission_service_pb2.PurgeDeadLettersRequest, requested_by: str
    ) -> tuple[int, list[str]]:
        """Purge every dead letter the filter takes (or, dry, only find them), as
        ``redrive_dead_letters``: each gets a PURGED event and stays FAILED."""

        async def purge(mission: mission_pb2.Mission) -> None:
            event = new_event(
                mission, events_pb2.EVENT_TYPE_PURGED, source=self._config.source, correlation_id=_correlation(mission)
            )
            event.purged.requested_by = requested_by
            await self._append(event)

        return await self._each_dead_letter("purged", request.filter, request.dry_run, purge, requested_by)

    async def _each_dead_letter(
        self,
        done: str,
        given: mission_service_pb2.DeadLetterFilter,
        dry_run: bool,
        act: Callable[[mission_pb2.Mission], Awaitable[None]],
        requested_by: str,
    ) -> tuple[int, list[str]]:
        """``act`` on each dead letter ``given`` takes, a page at a time (their confirms
        overlap); the first error stops it once its page is over."""
        limits = self._config.limits
        matching = DeadLetters.parse(
            given.type, given.error_type, given.label_selector, limits, field="filter.label_selector"
        )
        count = 0
        shown: list[str] = []
        for page in matching.pages(self._store, _BULK_PAGE):
            count += len(page)
            shown += [mission.id for mission in page[: _SHOWN_IDS - len(shown)]]
            if dry_run:
                continue
            outcomes = await asyncio.gather(*(act(mission) for mission in page), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        if not dry_run:
            log.info("%d dead letters %s by %s (%s)", count, done, requested_by, matching)
        return count, shown


def _work(mission: mission_pb2.Mission, source: str, correlation_id: str) -> events_pb2.MissionEvent:
    """The event that queues ``mission`` to run: CREATED, or REDRIVEN once it has been redriven."""
    if not mission.redrive_count:
        event = new_event(mission, events_pb2.EVENT_TYPE_CREATED, source=source, correlation_id=correlation_id)
        event.created.mission.CopyFrom(mission)
        return event
    event = new_event(mission, events_pb2.EVENT_TYPE_REDRIVEN, source=source, correlation_id=correlation_id)
    event.redriven.mission.CopyFrom(mission)
    event.redriven.redrive_count = mission.redrive_count
    return event


def _correlation(mission: mission_pb2.Mission) -> str:
    """Correlation id for a follow-up event: the submission's, else the mission id."""
    return mission.correlation_id or mission.id


def _same_submission(
    existing: mission_pb2.Mission, requested: mission_pb2.Mission, request: mission_service_pb2.SubmitMissionRequest
) -> mission_pb2.Mission:
    """The existing mission when ``requested`` asks for the same thing, else ALREADY_EXISTS.

    The due time is compared as the retry's ``request`` asks for it counted from the existing
    mission's creation: a retry's own clock would move a ``delay`` on by however late it came.
    """
    retried = mission_pb2.Mission()
    retried.CopyFrom(requested)
    retried.ClearField("due_time")
    due = validation.due_time(request, existing.create_time, None)
    if due is not None:
        retried.due_time.CopyFrom(due)
    for name in ("type", "payload", "priority", "max_attempts", "timeout", "labels", "due_time"):
        if getattr(existing, name) != getattr(retried, name):
            raise AlreadyExistsError(
                f"idempotency_key {requested.idempotency_key!r} was used for a different request"
                f" (mission {existing.id}, field {name} differs)"
            )
    return existing
