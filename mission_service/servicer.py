"""The MissionService gRPC servicer: each method turns its call's context into a ``Call`` and delegates.

What each method does is MissionOperations' (mission_service/operations.py), which the HTTP API
calls too; its errors become a status in mission_service/status.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from mission_service import auth
from mission_service.operations import Call, MissionOperations, given_correlation_id
from mission_service.status import translate_errors
from missions.metadata import CORRELATION_KEY
from missions.v1 import mission_service_pb2 as pb
from missions.v1 import mission_service_pb2_grpc

__all__ = ["MissionServicer"]


class MissionServicer(mission_service_pb2_grpc.MissionServiceServicer):
    def __init__(self, operations: MissionOperations, *, client_certificates: bool = False) -> None:
        """``client_certificates``: the server verifies client certificates (mTLS), so their names identify callers."""
        self._operations = operations
        self._client_certificates = client_certificates

    def _call(self, context: grpc.aio.ServicerContext) -> Call:
        metadata = context.invocation_metadata() or ()
        return Call(
            auth.caller(context, client_certificates=self._client_certificates),
            given_correlation_id(value for key, value in metadata if key == CORRELATION_KEY),
        )

    @translate_errors
    async def GetMission(
        self, request: pb.GetMissionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMissionResponse:
        return await self._operations.GetMission(request, self._call(context))

    @translate_errors
    async def ListMissions(
        self, request: pb.ListMissionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMissionsResponse:
        return await self._operations.ListMissions(request, self._call(context))

    @translate_errors
    async def SubmitMission(
        self, request: pb.SubmitMissionRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitMissionResponse:
        return await self._operations.SubmitMission(request, self._call(context))

    @translate_errors
    async def SubmitMissions(
        self, request: pb.SubmitMissionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitMissionsResponse:
        return await self._operations.SubmitMissions(request, self._call(context))

    @translate_errors
    async def CancelMission(
        self, request: pb.CancelMissionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelMissionResponse:
        return await self._operations.CancelMission(request, self._call(context))

    @translate_errors
    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        async with self._operations.WatchEvents(request, self._call(context)) as responses:
            async for response in responses:
                yield response

    @translate_errors
    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkersResponse:
        return await self._operations.ListWorkers(request, self._call(context))

    @translate_errors
    async def GetStats(self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext) -> pb.GetStatsResponse:
        return await self._operations.GetStats(request, self._call(context))

    @translate_errors
    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        return await self._operations.ListDeadLetters(request, self._call(context))

    @translate_errors
    async def RedriveMission(
        self, request: pb.RedriveMissionRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedriveMissionResponse:
        return await self._operations.RedriveMission(request, self._call(context))

    @translate_errors
    async def RedriveDeadLetters(
        self, request: pb.RedriveDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedriveDeadLettersResponse:
        return await self._operations.RedriveDeadLetters(request, self._call(context))

    @translate_errors
    async def PurgeDeadLetters(
        self, request: pb.PurgeDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.PurgeDeadLettersResponse:
        return await self._operations.PurgeDeadLetters(request, self._call(context))

    @translate_errors
    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateScheduleResponse:
        return await self._operations.CreateSchedule(request, self._call(context))

    @translate_errors
    async def GetSchedule(
        self, request: pb.GetScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetScheduleResponse:
        return await self._operations.GetSchedule(request, self._call(context))

    @translate_errors
    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSchedulesResponse:
        return await self._operations.ListSchedules(request, self._call(context))

    @translate_errors
    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseScheduleResponse:
        return await self._operations.PauseSchedule(request, self._call(context))

    @translate_errors
    async def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeScheduleResponse:
        return await self._operations.ResumeSchedule(request, self._call(context))

    @translate_errors
    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteScheduleResponse:
        return await self._operations.DeleteSchedule(request, self._call(context))
