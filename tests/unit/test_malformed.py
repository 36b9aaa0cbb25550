"""RejectMalformedRequests: a body that does not parse is INVALID_ARGUMENT with the usual error details."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mission_service.malformed import RejectMalformedRequests
from mission_service.status import DOMAIN
from missions.v1 import mission_service_pb2 as pb


def _detail(error: grpc.aio.AioRpcError, kind: type[Any]) -> Any:
    """The one ``kind`` detail of the rich status ``error`` carries."""
    status = rpc_status.from_call(error)
    assert status is not None
    [packed] = [detail for detail in status.details if detail.Is(kind.DESCRIPTOR)]
    message = kind()
    packed.Unpack(message)
    return message


async def test_a_request_that_does_not_parse_is_invalid_argument() -> None:
    async def get(request: pb.GetMissionRequest, context: grpc.aio.ServicerContext) -> pb.GetMissionResponse:
        return pb.GetMissionResponse()

    async def watch(request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b""

    handlers = {
        "Get": grpc.unary_unary_rpc_method_handler(
            get, pb.GetMissionRequest.FromString, pb.GetMissionResponse.SerializeToString
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(watch, pb.WatchEventsRequest.FromString),
    }
    server = grpc.aio.server(interceptors=[RejectMalformedRequests()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.S", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            valid = pb.GetMissionRequest(mission_id="m").SerializeToString()
            assert await channel.unary_unary("/t.S/Get")(valid) == b""
            for method in (channel.unary_unary("/t.S/Get"), channel.unary_stream("/t.S/Watch")):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await _finish(method(b"\xff\xff\xff", timeout=10))
                assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "Error parsing message" in str(raised.value.details())
                info = _detail(raised.value, error_details_pb2.ErrorInfo)
                assert (info.reason, info.domain) == ("INVALID_ARGUMENT", DOMAIN)
                [violation] = _detail(raised.value, error_details_pb2.BadRequest).field_violations
                assert violation.field == "request"
                assert "Error parsing message" in violation.description
    finally:
        await server.stop(None)


async def _finish(call: Any) -> None:
    if isinstance(call, grpc.aio.UnaryStreamCall):
        async for _ in call:
            pass
    else:
        await call
