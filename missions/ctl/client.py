"""MissionService as missionctl calls it: typed, synchronous, one deadline per unary call."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

from missions.client._connection import Metadata
from missions.metadata import CORRELATION_KEY
from missions.v1 import mission_service_pb2 as pb
from missions.v1 import mission_service_pb2_grpc

__all__ = ["ChannelFactory", "ServiceClient"]


ChannelFactory = Callable[[str], grpc.Channel]


class ServiceClient:
    """Typed calls to MissionService over one channel; unary calls carry the --timeout deadline.

    Every call carries ``metadata`` (the bearer token, when there is one).
    """

    def __init__(self, channel: grpc.Channel, timeout: float, metadata: Metadata = ()) -> None:
        self._stub = mission_service_pb2_grpc.MissionServiceStub(channel)
        self._timeout = timeout
        self._metadata = tuple(metadata)

    def get(self, mission_id: str) -> pb.GetMissionResponse:
        response: pb.GetMissionResponse = self._stub.GetMission(
            pb.GetMissionRequest(mission_id=mission_id), timeout=self._timeout, metadata=self._metadata
        )
        return response

    def list(self, request: pb.ListMissionsRequest) -> pb.ListMissionsResponse:
        response: pb.ListMissionsResponse = self._stub.ListMissions(
            request, timeout=self._timeout, metadata=self._metadata
        )
        return response

    def submit(self, request: pb.SubmitMissionRequest, correlation_id: str) -> pb.SubmitMissionResponse:
        response: pb.SubmitMissionResponse = self._stub.SubmitMission(
            request, timeout=self._timeout, metadata=(*self._metadata, (CORRELATION_KEY, correlation_id))
        )
        return response

    def cancel(self, request: pb.CancelMissionRequest) -> pb.CancelMissionResponse:
        response: pb.CancelMissionResponse = self._stub.CancelMission(
            request, timeout=self._timeout, metadata=self._metadata
        )
        return response

    def watch(self, request: pb.WatchEventsRequest) -> Iterator[pb.WatchEventsResponse]:
        """The event stream, without a deadline (closing the channel cancels it) and
        without the heartbeats the server sends on idle streams."""
        responses: Iterator[pb.WatchEventsResponse] = self._stub.WatchEvents(request, metadata=self._metadata)
        return (response for response in responses if response.HasField("event"))

    def workers(self, request: pb.ListWorkersRequest) -> pb.ListWorkersResponse:
        response: pb.ListWorkersResponse = self._stub.ListWorkers(
            request, timeout=self._timeout, metadata=self._metadata
        )
        return response

    def stats(self) -> pb.GetStatsResponse:
        response: pb.GetStatsResponse = self._stub.GetStats(
            pb.GetStatsRequest(), timeout=self._timeout, metadata=self._metadata
        )
        return response

    def dead_letters(self, request: pb.ListDeadLettersRequest) -> pb.ListDeadLettersResponse:
        response: pb.ListDeadLettersResponse = self._stub.ListDeadLetters(
            request, timeout=self._timeout, metadata=self._metadata
        )
        return response

    def redrive(self, request: pb.RedriveMissionRequest) -> pb.RedriveMissionResponse:
        response: pb.RedriveMissionResponse = self._stub.RedriveMission(
            request, timeout=self._timeout, metadata=self._metadata
        )
        return response
