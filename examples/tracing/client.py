"""Submit an echo mission inside a client span, wait for it to complete, print the trace id.

The span goes to stderr as one JSON line; the trace id to stdout. Run by run.sh; see README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from missions import AsyncClient
from missions.v1 import events_pb2


class TraceContext(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """What an instrumented gRPC client does: the current span's W3C trace context as metadata.

    It also waits for the service to be ready, as run.sh starts it just before this client.
    """

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *carrier.items())
        return await continuation(details._replace(metadata=metadata, wait_for_ready=True), request)


def _line(span: ReadableSpan) -> str:
    text: str = span.to_json(indent=None)
    return text + "\n"


async def submit(server: str) -> int:
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "example-client"}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr, formatter=_line)))
    tracer = provider.get_tracer("example")
    async with AsyncClient(server, interceptors=[TraceContext()]) as client:
        with tracer.start_as_current_span("submit and wait") as span:
            mission = await client.submit("echo", {"text": "traced"})
            async for event in client.watch(mission_ids=[mission.id]):  # ends once the mission is final
                print(events_pb2.EventType.Name(event.type), file=sys.stderr)
    provider.shutdown()
    return span.get_span_context().trace_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:50051")
    trace_id = asyncio.run(asyncio.wait_for(submit(parser.parse_args().server), 60))
    print(f"{trace_id:032x}")


if __name__ == "__main__":
    main()
