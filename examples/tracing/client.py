"""Submit an echo mission inside a client span, wait for it to complete, print the trace id.

The span goes to stderr as one JSON line; the trace id to stdout. Run by run.sh; see README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
from google.protobuf import struct_pb2
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from missions.v1 import events_pb2, mission_service_pb2, mission_service_pb2_grpc


def _line(span: ReadableSpan) -> str:
    text: str = span.to_json(indent=None)
    return text + "\n"


async def submit(server: str) -> int:
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "example-client"}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr, formatter=_line)))
    tracer = provider.get_tracer("example")
    payload = struct_pb2.Struct()
    payload.update({"text": "traced"})
    async with grpc.aio.insecure_channel(server) as channel:
        stub = mission_service_pb2_grpc.MissionServiceStub(channel)
        with tracer.start_as_current_span("submit and wait") as span:
            # What an instrumented gRPC client does: the current span's W3C trace context as metadata.
            metadata: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(metadata)
            request = mission_service_pb2.SubmitMissionRequest(type="echo", payload=payload)
            response = await stub.SubmitMission(request, metadata=tuple(metadata.items()), wait_for_ready=True)
            watch = mission_service_pb2.WatchEventsRequest(mission_ids=[response.mission.id])
            async for item in stub.WatchEvents(watch):  # ends once the mission is final
                if item.HasField("event"):
                    print(events_pb2.EventType.Name(item.event.type), file=sys.stderr)
    provider.shutdown()
    return span.get_span_context().trace_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051")
    trace_id = asyncio.run(asyncio.wait_for(submit(parser.parse_args().server), 60))
    print(f"{trace_id:032x}")


if __name__ == "__main__":
    main()
