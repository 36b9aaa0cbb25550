"""The TracerProvider of one process: its resource and the exporter a --tracing mode names."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

__all__ = ["missing_otlp_exporter", "provider"]

# OTLP exporter modules by OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL; gRPC is the Python SDK's default.
_OTLP_MODULES = {
    "grpc": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "opentelemetry-exporter-otlp-proto-grpc"),
    "http/protobuf": (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ),
}


def _otlp_protocol() -> str:
    # The SDK leaves the exporter class to the application: this is the standard variable for it.
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    return protocol if protocol in _OTLP_MODULES else "grpc"


def missing_otlp_exporter() -> str | None:
    """The package the OTLP exporter of the configured protocol needs, when it is not installed."""
    module, package = _OTLP_MODULES[_otlp_protocol()]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    return None if found else f"{package} (or opentelemetry-exporter-otlp)"


def _console_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


def _exporter(mode: str) -> SpanExporter:
    if mode == "console":
        # One JSON object per line, so the spans can be told from log lines and parsed.
        return ConsoleSpanExporter(out=sys.stdout, formatter=_console_line)
    exporter: SpanExporter = importlib.import_module(_OTLP_MODULES[_otlp_protocol()][0]).OTLPSpanExporter()
    return exporter


def provider(mode: str, service_name: str, instance_id: str) -> TracerProvider:
    """A TracerProvider exporting with ``mode`` ("console" or "otlp") from a background thread."""
    # Ours first, then what OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say on top.
    resource = Resource.create({SERVICE_NAME: service_name, SERVICE_INSTANCE_ID: instance_id}).merge(
        OTELResourceDetector().detect()
    )
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(_exporter(mode)))
    return tracer_provider
