"""Tracing: W3C trace context in message headers and call metadata, the attempt and server spans,
the --tracing option, and a core that runs without the opentelemetry packages."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, get_current_span

from mission_service import cli as service_cli
from missions import codec, tracing
from missions.options import TRACING, add_options
from missions.outcomes import Outcome
from missions.tracing import Tracing
from missions.tracing._propagation import from_headers, from_metadata
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2, mission_service_pb2_grpc
from tests.unit.factories import EventLog
from worker_service import cli as worker_cli

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"
SERVICE = "missions.v1.MissionService"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    # Never the global provider: it can be set once per process.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def propagating(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "propagating", True)


@pytest.fixture
def created() -> events_pb2.MissionEvent:
    return EventLog().created("m1", "echo")


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


# --- propagation ---


@pytest.mark.usefixtures("propagating")
def test_a_message_encoded_in_a_span_carries_its_trace_context(
    provider: TracerProvider, created: events_pb2.MissionEvent
) -> None:
    with provider.get_tracer("test").start_as_current_span("submit") as span:
        message = codec.encode(created)
    context = span.get_span_context()
    flags = f"{context.trace_flags:02x}"
    assert message.headers["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"
    assert codec.identity(message.headers) == codec.Identity("m1", "echo", 0, 0)
    assert codec.decode(message.body, message.headers, message.type) == created
    extracted = get_current_span(from_headers(message.headers)).get_span_context()
    assert (extracted.trace_id, extracted.span_id, extracted.is_remote) == (context.trace_id, context.span_id, True)


@pytest.mark.usefixtures("propagating")
def test_a_message_encoded_outside_any_span_carries_no_trace_context(created: events_pb2.MissionEvent) -> None:
    assert not {"traceparent", "tracestate"} & codec.encode(created).headers.keys()


def test_with_tracing_off_no_message_carries_a_trace_context(
    provider: TracerProvider, created: events_pb2.MissionEvent
) -> None:
    with provider.get_tracer("test").start_as_current_span("submit"):
        assert "traceparent" not in codec.encode(created).headers


def test_a_trace_context_and_its_state_are_read_from_call_metadata() -> None:
    context = get_current_span(
        from_metadata([("x-correlation-id", "c"), ("traceparent", TRACEPARENT), ("tracestate", "vendor=x")])
    ).get_span_context()
    assert (context.trace_id, context.span_id, context.is_remote) == (TRACE_ID, SPAN_ID, True)
    assert dict(context.trace_state) == {"vendor": "x"}


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"traceparent": TRACEPARENT.encode()},  # not a string
        {"traceparent": TRACEPARENT.replace("-01", "-01" + "0" * 2000)},  # too long
        {"traceparent": "00-zz-yy-01"},
        {"traceparent": f"00-{0:032x}-{SPAN_ID:016x}-01"},  # the invalid all-zero trace id
    ],
)
def test_headers_without_a_valid_trace_context_give_none(headers: dict[str, Any] | None) -> None:
    assert not get_current_span(from_headers(headers)).get_span_context().is_valid


# --- the attempt span ---


def _mission(attempt: int = 1) -> mission_pb2.Mission:
    return mission_pb2.Mission(id="m1", type="echo", attempt=attempt, max_attempts=3, correlation_id="c1")


async def _finished(outcome: Outcome | None) -> Outcome | None:
    return outcome


async def test_an_attempt_continues_the_trace_of_its_work_message(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def run() -> Outcome:
        # What the attempt publishes meanwhile is encoded inside its span.
        assert get_current_span().get_span_context().trace_id == TRACE_ID
        return Outcome(timedelta(seconds=1), result=None, error=None)

    headers = {"traceparent": TRACEPARENT, "x-missions-mission-id": "m1"}
    await Tracing(provider).attempt(headers, "created.echo", _mission(), run())
    span = _only(exporter)
    assert span.name == "mission execute echo"
    assert span.kind == SpanKind.CONSUMER
    assert span.parent is not None and (span.parent.trace_id, span.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert span.attributes is not None
    keys = ("mission.id", "mission.attempt", "mission.correlation_id", "mission.outcome")
    assert {key: span.attributes[key] for key in keys} == {
        "mission.id": "m1",
        "mission.attempt": 1,
        "mission.correlation_id": "c1",
        "mission.outcome": "succeeded",
    }
    assert span.attributes["messaging.rabbitmq.destination.routing_key"] == "created.echo"
    assert span.status.status_code == StatusCode.UNSET


async def test_a_failed_attempt_records_its_error(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    error = mission_pb2.MissionError(type="DeadlineExceeded", message="too slow", retryable=True)
    await Tracing(provider).attempt(None, "retrying.0", _mission(2), _finished(Outcome(timedelta(0), error=error)))
    span = _only(exporter)
    assert span.parent is None  # a work message without a trace context starts a trace
    assert span.attributes is not None
    assert span.attributes["mission.outcome"] == "failed"
    assert span.attributes["error.type"] == "DeadlineExceeded"
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "DeadlineExceeded: too slow"
    assert [(event.name, dict(event.attributes or {})) for event in span.events] == [
        ("exception", {"exception.type": "DeadlineExceeded", "exception.message": "too slow"})
    ]


async def test_an_attempt_that_did_not_start_says_so(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    await Tracing(provider).attempt(None, "created.echo", _mission(), _finished(None))
    assert (_only(exporter).attributes or {})["mission.outcome"] == "not_started"


async def test_a_bug_in_the_attempt_is_recorded_and_raised(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def run() -> Outcome:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await Tracing(provider).attempt(None, "created.echo", _mission(), run())
    span = _only(exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


# --- the server span ---


class _Servicer(mission_service_pb2_grpc.MissionServiceServicer):
    async def SubmitMission(
        self, request: mission_service_pb2.SubmitMissionRequest, context: grpc.aio.ServicerContext
    ) -> mission_service_pb2.SubmitMissionResponse:
        assert get_current_span().get_span_context().trace_id == TRACE_ID
        mission = mission_pb2.Mission(id="m1", type=request.type, correlation_id="c1")
        return mission_service_pb2.SubmitMissionResponse(mission=mission)

    async def GetMission(
        self, request: mission_service_pb2.GetMissionRequest, context: grpc.aio.ServicerContext
    ) -> mission_service_pb2.GetMissionResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"mission {request.mission_id!r} not found")
        raise AssertionError("abort returned")

    async def CancelMission(
        self, request: mission_service_pb2.CancelMissionRequest, context: grpc.aio.ServicerContext
    ) -> mission_service_pb2.CancelMissionResponse:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "broker down")
        raise AssertionError("abort returned")


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> mission_service_pb2_grpc.MissionServiceStub:
    return mission_service_pb2_grpc.MissionServiceStub(channel)


@pytest.fixture
async def channel(provider: TracerProvider) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[Tracing(provider).server_interceptor(SERVICE)])
    # The methods it leaves out answer UNIMPLEMENTED, as the generated base class does.
    servicer = _Servicer()  # type: ignore[abstract]
    mission_service_pb2_grpc.add_MissionServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


async def test_a_call_continues_the_callers_trace(
    stub: mission_service_pb2_grpc.MissionServiceStub, exporter: InMemorySpanExporter
) -> None:
    request = mission_service_pb2.SubmitMissionRequest(type="echo")
    await stub.SubmitMission(request, metadata=(("traceparent", TRACEPARENT),))
    span = _only(exporter)
    assert span.name == f"{SERVICE}/SubmitMission"
    assert span.kind == SpanKind.SERVER
    assert span.parent is not None and (span.parent.trace_id, span.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert dict(span.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "SubmitMission",
        "rpc.grpc.status_code": 0,
        "mission.id": "m1",
        "mission.type": "echo",
        "mission.correlation_id": "c1",
    }


async def test_a_callers_mistake_is_not_the_servers_error(
    stub: mission_service_pb2_grpc.MissionServiceStub, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetMission(mission_service_pb2.GetMissionRequest(mission_id="m9"))
    span = _only(exporter)
    assert span.parent is None
    assert (span.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert (span.attributes or {})["mission.id"] == "m9"
    assert span.status.status_code == StatusCode.UNSET


async def test_a_server_failure_sets_the_error_status(
    stub: mission_service_pb2_grpc.MissionServiceStub, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.CancelMission(mission_service_pb2.CancelMissionRequest(mission_id="m1"))
    span = _only(exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "broker down"


async def test_other_services_and_unimplemented_methods_are_not_traced(
    stub: mission_service_pb2_grpc.MissionServiceStub, channel: grpc.aio.Channel, exporter: InMemorySpanExporter
) -> None:
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListWorkers(mission_service_pb2.ListWorkersRequest())
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert exporter.get_finished_spans() == ()


# --- the option ---


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test")
    add_options(parser, [TRACING])
    return parser


@pytest.mark.parametrize("mode", ["off", "console"])
def test_off_and_console_need_only_the_extra(mode: str) -> None:
    assert _parser().parse_args(["--tracing", mode]).tracing == mode


def test_otlp_without_its_exporter_is_a_usage_error_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["--tracing", "otlp"])
    assert exited.value.code == 2
    assert "--tracing: otlp needs opentelemetry-exporter-otlp-proto-http" in capsys.readouterr().err


def test_a_mode_from_the_variable_is_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MISSIONS_TRACING", "jaeger")
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args([])
    assert exited.value.code == 2
    assert "--tracing: MISSIONS_TRACING: expected one of off, console, otlp, got 'jaeger'" in capsys.readouterr().err


@pytest.mark.parametrize("cli", [service_cli, worker_cli])
def test_both_processes_take_the_option(cli: Any) -> None:
    settings, _ = cli.parse(["--tracing", "console"])
    assert settings.tracing == "console"
    assert cli.parse([])[0].tracing == "off"


def test_off_configures_nothing() -> None:
    assert tracing.configure("off", "mission-service", "x") is None
    assert not tracing.propagating


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, env=env or None
    )


def test_console_prints_each_span_as_one_json_line_with_the_service_name() -> None:
    code = """if True:
        from missions import tracing
        spans = tracing.configure("console", "mission-worker", "w1")
        assert tracing.propagating
        from opentelemetry import trace
        with trace.get_tracer("handler").start_as_current_span("inside a handler"):
            pass
        spans.shutdown()
    """
    (line,) = _python(code).stdout.splitlines()
    span = json.loads(line)
    assert span["name"] == "inside a handler"
    assert span["resource"]["attributes"]["service.name"] == "mission-worker"
    assert span["resource"]["attributes"]["service.instance.id"] == "w1"


def test_the_core_runs_without_the_opentelemetry_packages() -> None:
    code = """if True:
        import sys
        sys.modules["opentelemetry"] = None  # as if not installed
        import mission_service.app, mission_service.cli, worker_service.app, worker_service.cli
        from missions import codec, tracing
        from tests.unit.factories import EventLog
        assert "traceparent" not in codec.encode(EventLog().created("m1", "echo")).headers
        assert tracing.configure("off", "mission-service", "x") is None
        try:
            tracing.configure("console", "mission-service", "x")
        except tracing.TracingUnavailableError as exc:
            print(exc)
        assert not [name for name in sys.modules if name.startswith("opentelemetry.")]
    """
    assert "--tracing console needs missions[tracing]" in _python(code).stdout
