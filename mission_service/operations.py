"""What the RPCs do, free of gRPC: submit, read, list and watch missions."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from mission_service import paging, validation
from mission_service.dispatch import Dispatcher
from mission_service.filters import EventFilter
from mission_service.follower import LogFollower
from mission_service.labels import parse_label_selector
from mission_service.limits import Limits
from mission_service.quota import StreamQuota
from mission_service.settings import DEFAULT_MAX_WATCH_STREAMS
from mission_service.store import MissionStore
from mission_service.tokens import Principal
from mission_service.watch import Hub, Idle, LogReplay, watch
from mission_service.workers import WorkerRegistry
from missions.errors import (
    AlreadyExistsError,
    BrokerUnavailableError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from missions.eventlog import EventPublisher
from missions.events import TERMINAL_STATES, new_event, now
from missions.logs import mission_fields
from missions.metrics import PublishedEvents
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2

__all__ = ["MissionOperations", "OperationsConfig", "QueueDepths"]

M = mission_pb2

# Given mission types: the messages ready in each type's work queue (by type), and in the
# dead-letter queue.
QueueDepths = Callable[[Sequence[str]], Awaitable[tuple[dict[str, int], int]]]

log = logging.getLogger(__name__)

# Ids derived from idempotency keys: uuid5(_KEY_NAMESPACE, "<namespace>/<key>"), so every
# replica of one namespace maps a key to the same mission.
_KEY_NAMESPACE = uuid.UUID("6f0b2a8e-3c1d-5b7a-9e4f-2d8c1a6b3e90")


@dataclass(frozen=True, slots=True)
class OperationsConfig:
    namespace: str
    source: str
    limits: Limits
    read_your_writes_timeout: float = 5.0
    # How long SubmitMission and RedriveMission wait for their event and its work message
    # while the broker confirms nothing before answering UNAVAILABLE (the work message
    # still follows once it can).
    queue_timeout: float = 5.0
    watch_heartbeat: timedelta = timedelta(seconds=15)
    # Concurrent WatchEvents streams per authenticated principal (0: no limit).
    max_watch_streams: int = DEFAULT_MAX_WATCH_STREAMS


class MissionOperations:
    """Submits missions through the broker and answers from the projected store."""

    def __init__(
        self,
        config: OperationsConfig,
        publisher: EventPublisher,
        dispatcher: Dispatcher,
        store: MissionStore,
        follower: LogFollower,
        hub: Hub,
        replay: LogReplay,
        workers: WorkerRegistry,
        queue_depths: QueueDepths,
        published: PublishedEvents | None = None,
    ) -> None:
        self._config = config
        self._published = published
        self._publisher = publisher
        self._dispatcher = dispatcher
        self._store = store
        self._follower = follower
        self._hub = hub
        self._replay = replay
        self._workers = workers
        self._queue_depths = queue_depths
        self._creating: dict[str, asyncio.Future[mission_pb2.Mission]] = {}  # by mission id
        self._watch_quota = StreamQuota(config.max_watch_streams)
        # Labels never change after submission, so a cache is always right.
        self._labels_of = functools.lru_cache(maxsize=10_000)(self._labels)

    def _labels(self, mission_id: str) -> Mapping[str, str]:
        mission = self._store.get(mission_id)
        return dict(mission.labels) if mission is not None else {}

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
        if not request.idempotency_key:
            return await self._create(mission, correlation_id)
        existing = self._store.get(mission.id)
        if existing is not None:
            await self._dispatch_again(_same_submission(existing, mission))
            return existing
        return _same_submission(await self._create_once(mission, correlation_id), mission)

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
        await self._append(event, priority=mission.priority, dispatch=True)
        log.debug(
            "mission %s (%s) queued",
            mission.id,
            mission.type,
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
        applied = self._follower.expect(event.id)
        try:
            await self.publish(event, priority)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(applied), self._config.read_your_writes_timeout)
        finally:
            applied.cancel()

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

    def get(self, mission_id: str) -> mission_pb2.Mission:
        validation.validate_mission_id(mission_id, self._config.limits)
        mission = self._store.get(mission_id)
        if mission is None:
            raise NotFoundError(f"mission {mission_id!r} not found")
        return mission

    def list(self, request: mission_service_pb2.ListMissionsRequest) -> mission_service_pb2.ListMissionsResponse:
        validation.validate_states(request.states)
        size = paging.page_size(request.page_size, self._config.limits)
        after = paging.decode_page_token(request.page_token, request.states, request.type)
        page = self._store.list(
            states=sorted(set(request.states)), mission_type=request.type, after_created_sequence=after, limit=size
        )
        token = paging.encode_page_token(page.last_created_sequence, request.states, request.type) if page.more else ""
        return mission_service_pb2.ListMissionsResponse(missions=page.missions, next_page_token=token)

    async def cancel(self, request: mission_service_pb2.CancelMissionRequest, caller: Principal) -> mission_pb2.Mission:
        """Cancel a queued, retrying or running mission; idempotent for a cancelled one.

        Only an admin may cancel another principal's mission. The CANCELLED event is the
        decision: it reaches the log and, through the control stream, every worker, which
        drop the mission's queued work and interrupt a running attempt.
        """
        mission = self.get(request.mission_id)
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
        limits = self._config.limits
        if not 0 <= request.max_attempts <= limits.max_max_attempts:
            raise InvalidArgumentError(
                "max_attempts", f"must be between 0 (the mission's own) and {limits.max_max_attempts}"
            )
        mission = self.get(request.mission_id)
        if not mission.dead_lettered:
            state = M.MissionState.Name(mission.state)
            raise FailedPreconditionError(
                f"mission {mission.id} is not dead-lettered ({state})", reason="NOT_DEAD_LETTERED"
            )
        fresh = M.Mission()
        fresh.CopyFrom(mission)
        fresh.state = M.MISSION_STATE_QUEUED
        fresh.attempt = 0
        fresh.max_attempts = request.max_attempts or mission.max_attempts
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

    def list_dead_letters(
        self, request: mission_service_pb2.ListDeadLettersRequest
    ) -> mission_service_pb2.ListDeadLettersResponse:
        size = paging.page_size(request.page_size, self._config.limits)
        # The token's filter digest marks it as a dead-letter token (state list [-1]).
        marker = [-1]
        after = paging.decode_page_token(request.page_token, marker, request.type)
        page = self._store.list(
            states=(), mission_type=request.type, after_created_sequence=after, limit=size, dead_lettered=True
        )
        token = paging.encode_page_token(page.last_created_sequence, marker, request.type) if page.more else ""
        return mission_service_pb2.ListDeadLettersResponse(missions=page.missions, next_page_token=token)

    async def stats(self) -> mission_service_pb2.GetStatsResponse:
        counts = self._store.counts_by_state()
        waiting = self._store.waiting_by_type()
        workers = self._workers.active_by_type()
        # Every type with waiting missions or a live worker; a waiting type without a
        # worker is what an operator needs to see (its missions wait for one to start).
        mission_types = sorted(waiting.keys() | workers.keys())
        depths, dead_depth = await self._queue_depths(mission_types)
        hour_ago = time.time() - 3600
        return mission_service_pb2.GetStatsResponse(
            states=[mission_service_pb2.StateCount(state=state, count=n) for state, n in sorted(counts.items())],
            queue_depth=sum(depths.values()),
            dead_letter_depth=dead_depth,
            running=counts.get(M.MISSION_STATE_RUNNING, 0),
            succeeded_last_hour=self._store.ended_since(M.MISSION_STATE_SUCCEEDED, hour_ago),
            failed_last_hour=self._store.ended_since(M.MISSION_STATE_FAILED, hour_ago),
            active_workers=self._workers.active(),
            last_sequence=self._follower.position,
            events_read=self._follower.tally.events,
            records_read=self._follower.tally.records,
            mission_types=[
                mission_service_pb2.MissionTypeStats(
                    mission_type=mission_type,
                    waiting=waiting.get(mission_type, 0),
                    queue_depth=depths.get(mission_type, 0),
                    active_workers=workers.get(mission_type, 0),
                )
                for mission_type in mission_types
            ],
        )

    def workers(self, request: mission_service_pb2.ListWorkersRequest) -> mission_service_pb2.ListWorkersResponse:
        return mission_service_pb2.ListWorkersResponse(workers=self._workers.list(request.include_gone))

    async def watch(
        self, request: mission_service_pb2.WatchEventsRequest, caller: Principal
    ) -> AsyncGenerator[events_pb2.MissionEvent | Idle, None]:
        """The events ``request`` asks for, then Idle while none come; counts against the
        caller's WatchEvents streams (ResourceExhaustedError past the limit)."""
        with self._watch_quota.stream(caller):
            validation.validate_watch(request, self._config.limits)
            event_filter = EventFilter(
                mission_ids=frozenset(request.mission_ids),
                types=frozenset(request.types),
                mission_types=frozenset(request.mission_types),
                labels=parse_label_selector(request.label_selector, self._config.limits),
                labels_of=self._labels_of,
            )
            start: int | None = request.after_sequence if request.HasField("after_sequence") else None
            finished: list[str] = []
            generations: dict[str, int] = {}
            if request.mission_ids:
                positions = self._store.positions(request.mission_ids)
                missing = [mission_id for mission_id in request.mission_ids if mission_id not in positions]
                if missing:
                    raise NotFoundError(f"mission {missing[0]!r} not found")
                if start is None:
                    start = min(created for created, _ in positions.values()) - 1
                finished = [mid for mid, (_, final) in positions.items() if final is not None and final <= start]
                generations = {mid: mission.redrive_count for mid in positions if (mission := self._store.get(mid))}
            idle = self._config.watch_heartbeat.total_seconds()
            stream = watch(self._hub, self._replay, event_filter, start, finished, generations, idle=idle)
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    yield event


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


def _same_submission(existing: mission_pb2.Mission, requested: mission_pb2.Mission) -> mission_pb2.Mission:
    """The existing mission when ``requested`` asks for the same thing, else ALREADY_EXISTS."""
    fields = ("type", "payload", "priority", "max_attempts", "timeout", "labels")
    for name in fields:
        if getattr(existing, name) != getattr(requested, name):
            raise AlreadyExistsError(
                f"idempotency_key {requested.idempotency_key!r} was used for a different request"
                f" (mission {existing.id}, field {name} differs)"
            )
    return existing
