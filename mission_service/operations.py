"""The MissionService methods, free of any transport: what the gRPC servicer and the HTTP API both call.

Each method is named after its RPC, takes the request message and the ``Call`` (who calls, with
which correlation id) and returns the response message, or raises a missions.errors.ServiceError;
each transport only translates its requests, identities and errors. So the two answer alike, and a
new RPC is one method here plus a line in each transport (tests check that HTTP has a route for each).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from mission_service.commands import MissionCommands
from mission_service.queries import MissionQueries
from mission_service.schedules import Schedules
from mission_service.status import to_submit_error
from mission_service.tokens import Principal
from mission_service.watch import Idle
from missions.events import now
from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb

__all__ = ["Call", "MissionOperations", "given_correlation_id"]

_MAX_CORRELATION_ID = 128


def given_correlation_id(values: Iterable[str | bytes]) -> str | None:
    """The first usable correlation id among a call's ``x-correlation-id`` values (metadata or headers)."""
    for value in values:
        if isinstance(value, str) and 0 < len(value) <= _MAX_CORRELATION_ID:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Call:
    """Who makes a call, and the correlation id it carries (None: it gave none)."""

    caller: Principal
    correlation_id: str | None = None


def _result(outcome: mission_pb2.Mission | BaseException) -> pb.SubmitMissionResult:
    if isinstance(outcome, mission_pb2.Mission):
        return pb.SubmitMissionResult(mission=outcome)
    return pb.SubmitMissionResult(error=to_submit_error(outcome))


async def _responses(
    items: AsyncIterator[events_pb2.MissionEvent | Idle],
) -> AsyncIterator[pb.WatchEventsResponse]:
    async for item in items:
        if isinstance(item, Idle):
            yield pb.WatchEventsResponse(heartbeat=pb.WatchHeartbeat(time=now(), last_sequence=item.position))
        else:
            yield pb.WatchEventsResponse(event=item)


class MissionOperations:
    """MissionService over MissionCommands (the write side), MissionQueries (the read side) and Schedules."""

    def __init__(self, commands: MissionCommands, queries: MissionQueries, schedules: Schedules) -> None:
        self._commands = commands
        self._queries = queries
        self._schedules = schedules

    async def GetMission(self, request: pb.GetMissionRequest, call: Call) -> pb.GetMissionResponse:
        return pb.GetMissionResponse(mission=self._queries.get(request.mission_id))

    async def ListMissions(self, request: pb.ListMissionsRequest, call: Call) -> pb.ListMissionsResponse:
        return self._queries.list(request)

    async def SubmitMission(self, request: pb.SubmitMissionRequest, call: Call) -> pb.SubmitMissionResponse:
        correlation_id = call.correlation_id or uuid.uuid4().hex
        return pb.SubmitMissionResponse(mission=await self._commands.submit(request, correlation_id, call.caller.name))

    async def SubmitMissions(self, request: pb.SubmitMissionsRequest, call: Call) -> pb.SubmitMissionsResponse:
        # Without a correlation id each mission gets its own (commands.submit_many).
        outcomes = await self._commands.submit_many(request.missions, call.correlation_id, call.caller.name)
        return pb.SubmitMissionsResponse(results=[_result(outcome) for outcome in outcomes])

    async def CancelMission(self, request: pb.CancelMissionRequest, call: Call) -> pb.CancelMissionResponse:
        return pb.CancelMissionResponse(mission=await self._commands.cancel(request, call.caller))

    @contextlib.asynccontextmanager
    async def WatchEvents(
        self, request: pb.WatchEventsRequest, call: Call
    ) -> AsyncIterator[AsyncIterator[pb.WatchEventsResponse]]:
        """The stream's responses while the block runs; a refused request raises on entry (MissionQueries.watching)."""
        async with self._queries.watching(request, call.caller) as items:
            yield _responses(items)

    async def ListWorkers(self, request: pb.ListWorkersRequest, call: Call) -> pb.ListWorkersResponse:
        return self._queries.workers(request)

    async def GetStats(self, request: pb.GetStatsRequest, call: Call) -> pb.GetStatsResponse:
        return await self._queries.stats()

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, call: Call) -> pb.ListDeadLettersResponse:
        return self._queries.list_dead_letters(request)

    async def RedriveMission(self, request: pb.RedriveMissionRequest, call: Call) -> pb.RedriveMissionResponse:
        return pb.RedriveMissionResponse(mission=await self._commands.redrive(request, call.caller.name))

    async def RedriveDeadLetters(
        self, request: pb.RedriveDeadLettersRequest, call: Call
    ) -> pb.RedriveDeadLettersResponse:
        count, ids = await self._commands.redrive_dead_letters(request, call.caller.name)
        return pb.RedriveDeadLettersResponse(count=count, mission_ids=ids)

    async def PurgeDeadLetters(self, request: pb.PurgeDeadLettersRequest, call: Call) -> pb.PurgeDeadLettersResponse:
        count, ids = await self._commands.purge_dead_letters(request, call.caller.name)
        return pb.PurgeDeadLettersResponse(count=count, mission_ids=ids)

    async def CreateSchedule(self, request: pb.CreateScheduleRequest, call: Call) -> pb.CreateScheduleResponse:
        return pb.CreateScheduleResponse(schedule=await self._schedules.create(request, call.caller))

    async def GetSchedule(self, request: pb.GetScheduleRequest, call: Call) -> pb.GetScheduleResponse:
        return pb.GetScheduleResponse(schedule=self._schedules.get(request.schedule_id))

    async def ListSchedules(self, request: pb.ListSchedulesRequest, call: Call) -> pb.ListSchedulesResponse:
        return self._schedules.list(request)

    async def PauseSchedule(self, request: pb.PauseScheduleRequest, call: Call) -> pb.PauseScheduleResponse:
        return pb.PauseScheduleResponse(schedule=await self._schedules.pause(request.schedule_id, call.caller))

    async def ResumeSchedule(self, request: pb.ResumeScheduleRequest, call: Call) -> pb.ResumeScheduleResponse:
        return pb.ResumeScheduleResponse(schedule=await self._schedules.resume(request.schedule_id, call.caller))

    async def DeleteSchedule(self, request: pb.DeleteScheduleRequest, call: Call) -> pb.DeleteScheduleResponse:
        return pb.DeleteScheduleResponse(schedule=await self._schedules.delete(request.schedule_id, call.caller))
