"""End to end: a client's trace continues through the service's SubmitMission span, the broker
and the worker's attempt spans (--tracing console), retries included."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from missions.v1 import events_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Process, Stack, payload, watch_events

pytestmark = pytest.mark.e2e

Span = dict[str, object]


def _spans(*processes: Process) -> Iterator[Span]:
    """The spans the console exporter wrote, one JSON object per line among the log lines."""
    for process in processes:
        for line in process.output().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and "context" in entry:
                    yield entry


def _context(span: Span, key: str) -> str:
    context = span["context"]
    assert isinstance(context, dict)
    return str(context[key])


def _attributes(span: Span) -> dict[str, object]:
    attributes = span["attributes"]
    assert isinstance(attributes, dict)
    return attributes


async def test_a_client_trace_continues_into_the_service_and_every_attempt(stack: Stack) -> None:
    service = await stack.start_service("--tracing", "console")
    worker = stack.start_worker("--tracing", "console", "--retry-base", "0.01", "--retry-max", "0.05")
    client = TracerProvider()
    client_spans = InMemorySpanExporter()
    client.add_span_processor(SimpleSpanProcessor(client_spans))
    tracer = client.get_tracer("test")

    requests = [
        pb.SubmitMissionRequest(type="echo", payload=payload(text="hi")),
        pb.SubmitMissionRequest(type="fail", payload=payload(fail_times=1), max_attempts=2),  # succeeds on 2
    ]
    missions = []
    for request in requests:
        with tracer.start_as_current_span("client submit"):
            metadata: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(metadata)
            missions.append((await stack.stub.SubmitMission(request, metadata=tuple(metadata.items()))).mission)
    # The stream ends once both missions have emitted their final event.
    watched = pb.WatchEventsRequest(mission_ids=[mission.id for mission in missions])
    events = [event.type async for event in watch_events(stack.stub, watched)]
    assert events.count(events_pb2.EVENT_TYPE_COMPLETED) == 2
    # Stopping flushes the spans each process still batches.
    assert worker.stop() == 0
    assert service.stop() == 0

    spans = list(_spans(service, worker))
    for mission, client_span in zip(missions, client_spans.get_finished_spans(), strict=True):
        trace_id = f"0x{client_span.context.trace_id:032x}"
        in_trace = [span for span in spans if _context(span, "trace_id") == trace_id]
        servers = [span for span in in_trace if span["name"] == "missions.v1.MissionService/SubmitMission"]
        assert len(servers) == 1, in_trace
        server = servers[0]
        assert server["parent_id"] == f"0x{client_span.context.span_id:016x}"
        assert server["kind"] == "SpanKind.SERVER"
        assert _attributes(server)["mission.id"] == mission.id
        assert _attributes(server)["rpc.grpc.status_code"] == 0
        assert server["resource"]["attributes"]["service.name"] == "mission-service"  # type: ignore[index]

        attempts = sorted(
            (span for span in in_trace if span["name"] == f"mission execute {mission.type}"),
            key=lambda span: _attributes(span)["mission.attempt"],  # type: ignore[arg-type,return-value]
        )
        assert [_attributes(span)["mission.attempt"] for span in attempts] == list(range(1, len(attempts) + 1))
        assert len(attempts) == (1 if mission.type == "echo" else 2), in_trace
        # The CREATED message carried the server span's context; a retry's RETRYING message its attempt's.
        parents = [_context(server, "span_id"), *(_context(span, "span_id") for span in attempts[:-1])]
        assert [span["parent_id"] for span in attempts] == parents
        assert all(_attributes(span)["mission.id"] == mission.id for span in attempts)
        assert [_attributes(span)["mission.outcome"] for span in attempts][-1] == "succeeded"
        assert attempts[0]["kind"] == "SpanKind.CONSUMER"
        assert attempts[0]["resource"]["attributes"]["service.name"] == "mission-worker"  # type: ignore[index]
        if mission.type == "fail":
            assert _attributes(attempts[0])["mission.outcome"] == "failed"
            assert attempts[0]["status"] == {"status_code": "ERROR", "description": "FailError: failed on purpose"}
