"""What the RPCs do, free of gRPC: submit, read, list and watch missions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from mission_service import validation
from mission_service.follower import LogFollower
from mission_service.store import MissionStore
from mission_service.validation import Limits
from mission_service.watch import EventFilter, Hub, LogReplay, watch
from missions.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnimplementedError,
)
from missions.eventlog import EventPublisher
from missions.events import new_event, now
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2

__all__ = ["MissionOperations", "OperationsConfig"]

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


class MissionOperations:
    """Submits missions through the broker and answers from the projected store."""

    def __init__(
        self,
        config: OperationsConfig,
        publisher: EventPublisher,
        store: MissionStore,
        follower: LogFollower,
        hub: Hub,
        replay: LogReplay,
    ) -> None:
        self._config = config
        self._publisher = publisher
        self._store = store
        self._follower = follower
        self._hub = hub
        self._replay = replay

    def mission_id_for(self, idempotency_key: str) -> str:
        if not idempotency_key:
            return str(uuid.uuid4())
        return str(uuid.uuid5(_KEY_NAMESPACE, f"{self._config.namespace}/{idempotency_key}"))

    async def submit(
        self, request: mission_service_pb2.SubmitMissionRequest, correlation_id: str
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
        )
        if request.HasField("timeout"):
            mission.timeout.CopyFrom(request.timeout)
        if request.idempotency_key:
            existing = self._store.get(mission.id)
            if existing is not None:
                return _same_submission(existing, mission)
        event = new_event(
            mission, events_pb2.EVENT_TYPE_CREATED, source=self._config.source, correlation_id=correlation_id
        )
        event.created.mission.CopyFrom(mission)
        applied = self._follower.expect(event.id)
        try:
            await self._publisher.publish(event, priority=mission.priority)
            log.info("mission %s (%s) queued", mission.id, mission.type)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(applied), self._config.read_your_writes_timeout)
        finally:
            applied.cancel()
        stored = self._store.get(mission.id)
        if stored is None:
            return mission
        # A concurrent submission with the same key may have won the race to the log.
        return _same_submission(stored, mission) if request.idempotency_key else stored

    def get(self, mission_id: str) -> mission_pb2.Mission:
        if not mission_id:
            raise InvalidArgumentError("mission_id", "is required")
        mission = self._store.get(mission_id)
        if mission is None:
            raise NotFoundError(f"mission {mission_id!r} not found")
        return mission

    def list(self, request: mission_service_pb2.ListMissionsRequest) -> mission_service_pb2.ListMissionsResponse:
        validation.validate_states(request.states)
        size = validation.page_size(request.page_size, self._config.limits)
        after = validation.decode_page_token(request.page_token, request.states, request.type)
        page = self._store.list(
            states=sorted(set(request.states)), mission_type=request.type, after_created_sequence=after, limit=size
        )
        token = (
            validation.encode_page_token(page.last_created_sequence, request.states, request.type) if page.more else ""
        )
        return mission_service_pb2.ListMissionsResponse(missions=page.missions, next_page_token=token)

    async def cancel(self, request: mission_service_pb2.CancelMissionRequest) -> mission_pb2.Mission:
        mission = self.get(request.mission_id)
        if mission.state == mission_pb2.MISSION_STATE_CANCELLED:
            return mission
        if mission.state in (mission_pb2.MISSION_STATE_SUCCEEDED, mission_pb2.MISSION_STATE_FAILED):
            state = mission_pb2.MissionState.Name(mission.state)
            raise FailedPreconditionError(f"mission {mission.id} has already finished ({state})")
        raise UnimplementedError("cancelling a queued or running mission is not available yet")

    async def watch(
        self, request: mission_service_pb2.WatchEventsRequest
    ) -> AsyncGenerator[events_pb2.MissionEvent, None]:
        validation.validate_watch(request, self._config.limits)
        event_filter = EventFilter(frozenset(request.mission_ids), frozenset(request.types))
        start: int | None = request.after_sequence if request.HasField("after_sequence") else None
        finished: list[str] = []
        if request.mission_ids:
            positions = self._store.positions(request.mission_ids)
            missing = [mission_id for mission_id in request.mission_ids if mission_id not in positions]
            if missing:
                raise NotFoundError(f"mission {missing[0]!r} not found")
            if start is None:
                start = min(created for created, _ in positions.values()) - 1
            finished = [mid for mid, (_, final) in positions.items() if final is not None and final <= start]
        async with contextlib.aclosing(watch(self._hub, self._replay, event_filter, start, finished)) as events:
            async for event in events:
                yield event


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
