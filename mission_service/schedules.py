"""Recurring schedules: create, read, pause, resume and delete them through the log, and fire them.

A schedule is a projection of its events (SCHEDULE_*, schedule_projection.py) in the read model,
as a mission is. The leader fires it (scheduler.py) at each firing time: it submits the mission
of the template through MissionCommands.submit with the idempotency key
``schedule:<id>:<firing time>``, then records SCHEDULE_FIRED, which moves the schedule to its
next firing time. In that order, a leader that dies in between leaves the firing time unrecorded
and the next leader submits it again, which the key makes the same mission; two leaders at once
(around a failover) likewise make one mission, and the log keeps the first SCHEDULE_FIRED.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from mission_service import paging, validation
from mission_service.commands import MissionCommands
from mission_service.limits import Limits
from mission_service.recurrence import recurrence, timestamp
from mission_service.store import MissionStore
from mission_service.tokens import Principal
from missions.errors import AlreadyExistsError, NotFoundError, PermissionDeniedError
from missions.events import TERMINAL_STATES, now
from missions.v1 import events_pb2, mission_pb2, schedule_pb2
from missions.v1 import mission_service_pb2 as pb

__all__ = ["SCHEDULE_LABEL", "Firing", "Schedules", "plan"]

log = logging.getLogger(__name__)

E = events_pb2
S = schedule_pb2

# The label each mission of a schedule carries: `missionctl list -l missions.schedule=<id>`.
SCHEDULE_LABEL = "missions.schedule"
# A firing this late is missed (CATCH_UP_POLICY_SKIP skips it): the leader fires within a
# fraction of a second, so only a time when no replica led (or the broker was away) is this late.
_LATE_NS = 10 * 1_000_000_000
# Binds ListSchedules page tokens to this list (paging.encode_page_token).
_LIST = {"list": "schedules"}


@dataclass(frozen=True, slots=True)
class Firing:
    """What a schedule's firing at ``fire_time`` (epoch ns) does: submit, or skip for ``skip_reason``."""

    fire_time: int
    skip_reason: events_pb2.SkipReason.ValueType = E.SKIP_REASON_UNSPECIFIED


def plan(schedule: schedule_pb2.Schedule, now_ns: int, previous: mission_pb2.Mission | None) -> Firing:
    """The firing of ``schedule``, due at ``now_ns``, whose previous firing submitted ``previous``.

    Of the firing times passed since its next one, only the latest fires (catch-up ONE), or is
    skipped when it is late (catch-up SKIP); overlap SKIP skips it while ``previous`` runs.
    """
    fire_time = max(recurrence(schedule).latest_until(now_ns) or 0, schedule.next_fire_time.ToNanoseconds())
    if schedule.catch_up_policy == S.CATCH_UP_POLICY_SKIP and now_ns - fire_time > _LATE_NS:
        return Firing(fire_time, E.SKIP_REASON_MISSED)
    if (
        schedule.overlap_policy != S.OVERLAP_POLICY_ALLOW
        and previous is not None
        and previous.state not in TERMINAL_STATES
    ):
        return Firing(fire_time, E.SKIP_REASON_OVERLAP)
    return Firing(fire_time)


def submission(schedule: schedule_pb2.Schedule, fire_time: str = "") -> pb.SubmitMissionRequest:
    """The SubmitMission request of ``schedule``'s firing at ``fire_time`` (RFC 3339)."""
    template = schedule.mission_template
    request = pb.SubmitMissionRequest(
        type=template.type,
        payload=template.payload,
        priority=template.priority,
        max_attempts=template.max_attempts,
        labels={**template.labels, SCHEDULE_LABEL: schedule.id},
        idempotency_key=f"schedule:{schedule.id}:{fire_time}" if fire_time else "",
    )
    if template.HasField("timeout"):
        request.timeout.CopyFrom(template.timeout)
    return request


class Schedules:
    """What the schedule RPCs do, free of gRPC, and the firing of a due schedule."""

    def __init__(
        self,
        missions: MissionCommands,
        store: MissionStore,
        limits: Limits,
        source: str,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._missions = missions
        self._store = store
        self._limits = limits
        self._source = source
        self._clock = clock

    async def create(self, request: pb.CreateScheduleRequest, caller: Principal) -> schedule_pb2.Schedule:
        schedule = S.Schedule(
            id=request.schedule_id or str(uuid.uuid4()),
            mission_template=request.schedule.mission_template,
            cron=request.schedule.cron,
            time_zone=request.schedule.time_zone,
            overlap_policy=request.schedule.overlap_policy or S.OVERLAP_POLICY_SKIP,
            catch_up_policy=request.schedule.catch_up_policy or S.CATCH_UP_POLICY_ONE,
            state=S.SCHEDULE_STATE_ACTIVE,
            create_time=now(),
            created_by=caller.name,
        )
        if request.schedule.HasField("interval"):
            schedule.interval.CopyFrom(request.schedule.interval)
        validation.validate_schedule(request, submission(schedule, "x"), self._limits)
        schedule.next_fire_time.CopyFrom(
            timestamp(recurrence(schedule).next_after(schedule.create_time.ToNanoseconds()))
        )
        if not self._store.schedule_id_taken(schedule.id):
            event = self._event(schedule, E.EVENT_TYPE_SCHEDULE_CREATED)
            event.schedule_created.schedule.CopyFrom(schedule)
            if await self._missions.append(event):
                log.info("schedule %s created by %s", schedule.id, caller.name)
                return self._store.get_schedule(schedule.id) or schedule
        return self._same(schedule)

    def _same(self, requested: schedule_pb2.Schedule) -> schedule_pb2.Schedule:
        """The existing schedule of ``requested``'s id when it was created by the same request;
        else ALREADY_EXISTS (as ``requested`` when this replica has not applied it yet)."""
        existing = self._store.get_schedule(requested.id)
        if existing is None:
            if self._store.schedule_id_taken(requested.id):
                raise AlreadyExistsError(
                    f"schedule {requested.id!r} was deleted; ids are not reused", reason="SCHEDULE_EXISTS"
                )
            return requested  # appended, not applied here within the wait: durable all the same
        for name in ("mission_template", "cron", "time_zone", "interval", "overlap_policy", "catch_up_policy"):
            if getattr(existing, name) != getattr(requested, name):
                raise AlreadyExistsError(
                    f"schedule {requested.id!r} exists with another {name}", reason="SCHEDULE_EXISTS"
                )
        return existing

    def get(self, schedule_id: str) -> schedule_pb2.Schedule:
        validation.validate_schedule_id(schedule_id)
        schedule = self._store.get_schedule(schedule_id)
        if schedule is None:
            raise NotFoundError(f"schedule {schedule_id!r} not found", reason="SCHEDULE_NOT_FOUND")
        return schedule

    def list(self, request: pb.ListSchedulesRequest) -> pb.ListSchedulesResponse:
        size = paging.page_size(request.page_size, self._limits)
        after = paging.decode_page_token(request.page_token, (), "", _LIST)
        page = self._store.list_schedules(after, size)
        token = paging.encode_page_token(page.last_created_sequence, (), "", _LIST) if page.more else ""
        return pb.ListSchedulesResponse(schedules=page.schedules, next_page_token=token)

    async def pause(self, schedule_id: str, caller: Principal) -> schedule_pb2.Schedule:
        return await self._change(schedule_id, caller, E.EVENT_TYPE_SCHEDULE_PAUSED, S.SCHEDULE_STATE_PAUSED)

    async def resume(self, schedule_id: str, caller: Principal) -> schedule_pb2.Schedule:
        return await self._change(schedule_id, caller, E.EVENT_TYPE_SCHEDULE_RESUMED, S.SCHEDULE_STATE_ACTIVE)

    async def delete(self, schedule_id: str, caller: Principal) -> schedule_pb2.Schedule:
        return await self._change(schedule_id, caller, E.EVENT_TYPE_SCHEDULE_DELETED, None)

    async def _change(
        self,
        schedule_id: str,
        caller: Principal,
        event_type: events_pb2.EventType.ValueType,
        becomes: schedule_pb2.ScheduleState.ValueType | None,
    ) -> schedule_pb2.Schedule:
        """Pause, resume (``becomes`` the state) or delete (None) a schedule, as its creator or an admin."""
        schedule = self.get(schedule_id)
        if not caller.is_admin and schedule.created_by != caller.name:
            raise PermissionDeniedError(
                f"principal {caller.name!r} may only change its own schedules;"
                f" schedule {schedule_id} was created by {schedule.created_by!r}",
                reason="NOT_SCHEDULE_OWNER",
            )
        if schedule.state == becomes:
            return schedule
        event = self._event(schedule, event_type)
        details = {
            E.EVENT_TYPE_SCHEDULE_PAUSED: event.schedule_paused,
            E.EVENT_TYPE_SCHEDULE_RESUMED: event.schedule_resumed,
            E.EVENT_TYPE_SCHEDULE_DELETED: event.schedule_deleted,
        }[event_type]
        details.requested_by = caller.name
        await self._missions.append(event)
        log.info("schedule %s: %s by %s", schedule_id, E.EventType.Name(event_type), caller.name)
        return schedule if becomes is None else (self._store.get_schedule(schedule_id) or schedule)

    async def fire(self, schedule: schedule_pb2.Schedule) -> None:
        """Fire a schedule that is due: submit its mission (or skip), then record SCHEDULE_FIRED."""
        previous = self._store.get(schedule.last_mission_id) if schedule.last_mission_id else None
        firing = plan(schedule, self._clock(), previous)
        event = self._event(schedule, E.EVENT_TYPE_SCHEDULE_FIRED)
        fired = event.schedule_fired
        fired.fire_time.CopyFrom(timestamp(firing.fire_time))
        fired.skip_reason = firing.skip_reason
        if firing.skip_reason == E.SKIP_REASON_UNSPECIFIED:
            request = submission(schedule, fired.fire_time.ToJsonString())
            mission = await self._missions.submit(request, uuid.uuid4().hex, schedule.created_by)
            fired.mission_id = mission.id
            event.correlation_id = mission.correlation_id
        await self._missions.append(event)
        log.debug(
            "schedule %s fired for %s: %s",
            schedule.id,
            fired.fire_time.ToJsonString(),
            fired.mission_id or E.SkipReason.Name(fired.skip_reason),
        )

    def _event(self, schedule: schedule_pb2.Schedule, event_type: events_pb2.EventType.ValueType) -> E.MissionEvent:
        return E.MissionEvent(
            id=str(uuid.uuid4()),
            schedule_id=schedule.id,
            type=event_type,
            time=now(),
            source=self._source,
            correlation_id=f"schedule:{schedule.id}",
            mission_type=schedule.mission_template.type,
        )
