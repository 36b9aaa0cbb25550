"""Hostile requests against the real mission-service process on the real RabbitMQ.

Random bytes, huge and deep Structs, unicode edge cases, extreme integers and random
metadata: every answer must be a proper status (never UNKNOWN or INTERNAL), the process
must stay up with bounded memory, and a normal client must be served afterwards.
"""

from __future__ import annotations

import asyncio
import pathlib

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from missions.v1 import mission_service_pb2 as pb
from tests.fuzz.strategies import calls, examples, metadata, raw_calls
from tests.support import Stack, payload

pytestmark = pytest.mark.e2e

SERVICE = pb.DESCRIPTOR.services_by_name["MissionService"].full_name
STREAMING = {"WatchEvents"}
S = grpc.StatusCode
# What a hostile request may get. UNKNOWN or INTERNAL is a bug; UNAVAILABLE a service down.
ACCEPTABLE = {
    S.OK,
    S.INVALID_ARGUMENT,
    S.NOT_FOUND,
    S.ALREADY_EXISTS,
    S.FAILED_PRECONDITION,
    S.OUT_OF_RANGE,
    S.RESOURCE_EXHAUSTED,
    S.UNAUTHENTICATED,
    S.PERMISSION_DENIED,
}
# A safety net, not a threshold: a call that meets it counts as a hang.
DEADLINE_S = 30
EXAMPLES_PER_HALF = examples(250)
MIB = 1024 * 1024
RSS_CAP = 512 * MIB


class RawClient:
    """A blocking channel that sends bytes as they are (no serializer) to any method."""

    def __init__(self, target: str) -> None:
        # The client may send more than the server accepts: that is what is being tested.
        self._channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1)])

    def close(self) -> None:
        self._channel.close()

    def status(self, method: str, body: bytes, metadata: list[tuple[str, str | bytes]]) -> tuple[grpc.StatusCode, str]:
        """The status of one call; a stream that yields anything (a heartbeat) counts as OK."""
        path = f"/{SERVICE}/{method}"
        try:
            if method in STREAMING:
                stream = self._channel.unary_stream(path)(body, metadata=metadata, timeout=DEADLINE_S)
                next(stream, None)
                stream.cancel()
            else:
                self._channel.unary_unary(path)(body, metadata=metadata, timeout=DEADLINE_S)
        except grpc.RpcError as exc:
            return exc.code(), str(exc.details())
        return S.OK, ""


def _fuzz(client: RawClient, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(call=st.one_of(calls, raw_calls), metadata=metadata)
    def one_call(call: tuple[str, bytes], metadata: list[tuple[str, str | bytes]]) -> None:
        method, body = call
        code, details = client.status(method, body, metadata)
        assert code in ACCEPTABLE, f"{method} answered {code.name}: {details}"

    one_call()


def _rss_bytes(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


async def test_hostile_requests_get_proper_statuses_and_the_service_keeps_serving(stack: Stack) -> None:
    # Idle heartbeats at once: a stream that was accepted says so with its first item.
    service = await stack.start_service("--watch-heartbeat", "0.05")
    assert service.popen is not None
    client = RawClient(stack.target)
    try:
        await asyncio.to_thread(_fuzz, client, EXAMPLES_PER_HALF)
        first_half = _rss_bytes(service.popen.pid)
        await asyncio.to_thread(_fuzz, client, EXAMPLES_PER_HALF)
        second_half = _rss_bytes(service.popen.pid)
    finally:
        client.close()
    assert service.popen.poll() is None, service.output()
    assert second_half < RSS_CAP, f"RSS {second_half / MIB:.0f} MiB"
    # The same hostile mix again must not cost much more memory than the first time.
    assert second_half <= first_half * 1.25 + 32 * MIB, f"RSS {first_half / MIB:.0f} -> {second_half / MIB:.0f} MiB"

    submitted = await stack.stub.SubmitMission(pb.SubmitMissionRequest(type="echo", payload=payload(n=1)), timeout=30)
    fetched = await stack.stub.GetMission(pb.GetMissionRequest(mission_id=submitted.mission.id), timeout=30)
    assert fetched.mission.id == submitted.mission.id
    assert "Traceback" not in service.output()
