"""End to end: two mission-service replicas on one namespace serve the same missions and sequences."""

from __future__ import annotations

import grpc
import pytest

from missions.v1 import events_pb2, mission_pb2, mission_service_pb2_grpc
from missions.v1 import mission_service_pb2 as pb
from tests.support import Process, Stack, free_port, payload, wait_serving, watch_events

pytestmark = pytest.mark.e2e

E = events_pb2


async def _log_until_completed(
    stub: mission_service_pb2_grpc.MissionServiceStub, mission_ids: list[str]
) -> list[events_pb2.MissionEvent]:
    """The log from its start until every one of ``mission_ids`` has COMPLETED."""
    pending = set(mission_ids)
    seen = []
    async for event in watch_events(stub, pb.WatchEventsRequest(after_sequence=0)):
        seen.append(event)
        if event.type == E.EVENT_TYPE_COMPLETED:
            pending.discard(event.mission_id)
        if not pending:
            return seen
    raise AssertionError("the stream ended")


async def test_submit_through_one_replica_and_watch_through_the_other(stack: Stack) -> None:
    await stack.start_service()
    port = free_port()
    env = {**stack.env(), "MISSIONS_LISTEN": f"127.0.0.1:{port}", "MISSIONS_STATE_DIR": str(stack.directory / "b")}
    replica = Process(["mission_service"], env, stack.directory / "replica.log").start()
    try:
        await wait_serving(f"127.0.0.1:{port}", replica)
        stack.start_worker()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            other = mission_service_pb2_grpc.MissionServiceStub(channel)
            request = pb.SubmitMissionRequest(type="echo", payload=payload(n=1))
            ids = [(await stack.stub.SubmitMission(request)).mission.id for _ in range(5)]
            through_b = await _log_until_completed(other, ids)
            through_a = await _log_until_completed(stack.stub, ids)
            assert [(e.sequence, e.id) for e in through_b] == [(e.sequence, e.id) for e in through_a]
            for mission_id in ids:
                a = (await stack.stub.GetMission(pb.GetMissionRequest(mission_id=mission_id))).mission
                b = (await other.GetMission(pb.GetMissionRequest(mission_id=mission_id))).mission
                assert b.state == a.state == mission_pb2.MISSION_STATE_SUCCEEDED
                assert b.last_sequence == a.last_sequence
            # Submitted through B, watched through A by id.
            via_b = (await other.SubmitMission(pb.SubmitMissionRequest(type="echo"))).mission
            history = await _log_until_completed(stack.stub, [via_b.id])
            assert [e.type for e in history if e.mission_id == via_b.id] == [
                E.EVENT_TYPE_CREATED,
                E.EVENT_TYPE_STARTED,
                E.EVENT_TYPE_COMPLETED,
            ]
    finally:
        replica.kill()
