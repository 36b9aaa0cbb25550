"""The MissionService gRPC servicer: translate requests and responses, delegate the rest.

What each call does (and whom it refuses) is MissionCommands' or MissionQueries'; its errors become a
status in mission_service/status.py.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import grpc

from mission_service import auth
from mission_service.commands import MissionCommands
from mission_service.queries import MissionQueries
from mission_service.status import to_submit_error, translate_errors
from mission_service.tokens import Principal
from mission_service.watch import Idle
from missions.events import now
from missions.metadata import CORRELATION_KEY
from missions.v1 import mission_pb2, mission_service_pb2_grpc
from missions.v1 import mission_service_pb2 as pb

__all__ = ["MissionServicer"]


def _given_correlation_id(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == CORRELATION_KEY and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return None


def _correlation_id(context: grpc.aio.ServicerContext) -> str:
    return _given_correlation_id(context) or uuid.uuid4().hex


def _result(outcome: mission_pb2.Mission | BaseException) -> pb.SubmitMissionResult:
    if isinstance(outcome, mission_pb2.Mission):
        return pb.SubmitMissionResult(mission=outcome)
    return pb.SubmitMissionResult(error=to_submit_error(outcome))


class MissionServicer(mission_service_pb2_grpc.MissionServiceServicer):
    def __init__(
        self, commands: MissionCommands, queries: MissionQueries, *, client_certificates: bool = False
    ) -> None:
        """``client_certificates``: the server verifies client certificates (mTLS), so their names identify callers."""
        self._commands = commands
        self._queries = queries
        self._client_certificates = client_certificates

    def _caller(self, context: grpc.aio.ServicerContext) -> Principal:
        return auth.caller(context, client_certificates=self._client_certificates)

    @translate_errors
    async def GetMission(
        self, request: pb.GetMissionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMissionResponse:
        return pb.GetMissionResponse(mission=self._queries.get(request.mission_id))

    @translate_errors
    async def ListMissions(
        self, request: pb.ListMissionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMissionsResponse:
        return self._queries.list(request)

    @translate_errors
    async def SubmitMission(
        self, request: pb.SubmitMissionRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitMissionResponse:
        mission = await self._commands.submit(request, _correlation_id(context), self._caller(context).name)
        return pb.SubmitMissionResponse(mission=mission)

    @translate_errors
    async def SubmitMissions(
        self, request: pb.SubmitMissionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitMissionsResponse:
        caller = self._caller(context).name
        outcomes = await self._commands.submit_many(request.missions, _given_correlation_id(context), caller)
        return pb.SubmitMissionsResponse(results=[_result(outcome) for outcome in outcomes])

    @translate_errors
    async def CancelMission(
        self, request: pb.CancelMissionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelMissionResponse:
        return pb.CancelMissionResponse(mission=await self._commands.cancel(request, self._caller(context)))

    @translate_errors
    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        async with contextlib.aclosing(self._queries.watch(request, self._caller(context))) as items:
            async for item in items:
                if isinstance(item, Idle):
                    yield pb.WatchEventsResponse(heartbeat=pb.WatchHeartbeat(time=now(), last_sequence=item.position))
                else:
                    yield pb.WatchEventsResponse(event=item)

    @translate_errors
    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkersResponse:
        return self._queries.workers(request)

    @translate_errors
    async def GetStats(self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext) -> pb.GetStatsResponse:
        return await self._queries.stats()

    @translate_errors
    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        return self._queries.list_dead_letters(request)

    @translate_errors
    async def RedriveMission(
        self, request: pb.RedriveMissionRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedriveMissionResponse:
        return pb.RedriveMissionResponse(mission=await self._commands.redrive(request, self._caller(context).name))

    @translate_errors
    async def RedriveDeadLetters(
        self, request: pb.RedriveDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedriveDeadLettersResponse:
        count, ids = await self._commands.redrive_dead_letters(request, self._caller(context).name)
        return pb.RedriveDeadLettersResponse(count=count, mission_ids=ids)

    @translate_errors
    async def PurgeDeadLetters(
        self, request: pb.PurgeDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.PurgeDeadLettersResponse:
        count, ids = await self._commands.purge_dead_letters(request, self._caller(context).name)
        return pb.PurgeDeadLettersResponse(count=count, mission_ids=ids)
