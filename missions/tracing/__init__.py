"""OpenTelemetry tracing, optional: a SubmitMission's trace continues through the broker
into the worker's attempts.

Off by default (``--tracing off``), and then the opentelemetry packages are never
imported, so the core runs without them and a message costs one ``if``. With
``--tracing console`` or ``otlp``, ``configure`` installs the process's TracerProvider
and returns a ``Tracing``: the service's interceptor gives each MissionService call a
server span and the worker runs each attempt in a consumer span; meanwhile
``missions.codec`` adds the current span's W3C trace context (``traceparent``,
``tracestate``) to the headers of every message it encodes. docs/tracing.md.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from missions.tracing._tracing import Tracing

__all__ = [
    "MODES",
    "TRACE_HEADERS",
    "Tracing",
    "TracingUnavailableError",
    "configure",
    "inject",
    "installed",
    "propagating",
]

MODES = ("off", "console", "otlp")
# The W3C trace context headers, in gRPC metadata and in AMQP message headers alike.
TRACE_HEADERS = ("traceparent", "tracestate")

# Whether missions.codec adds the trace context to messages. Set by configure(); read it
# as ``tracing.propagating`` (never import the name), so that off costs one test.
propagating = False


class TracingUnavailableError(RuntimeError):
    """A --tracing mode whose packages are not installed."""


def _missing_package(mode: str) -> str | None:
    """The pip package ``mode`` needs that is not installed, or None."""
    if mode == "off":
        return None
    if importlib.util.find_spec("opentelemetry") is None or importlib.util.find_spec("opentelemetry.sdk") is None:
        return "missions[tracing] (opentelemetry-api and opentelemetry-sdk)"
    if mode == "otlp":
        from missions.tracing._provider import missing_otlp_exporter

        return missing_otlp_exporter()
    return None


def installed(mode: str) -> str:
    """``mode`` when the packages it needs are installed (--tracing checks it at start-up); ValueError otherwise."""
    missing = _missing_package(mode)
    if missing:
        raise ValueError(f"{mode} needs {missing}: pip install it")
    return mode


def configure(mode: str, service_name: str, instance_id: str) -> Tracing | None:
    """Turn tracing on for this process (global TracerProvider, message propagation), or None when off.

    ``service_name`` is the ``service.name`` resource attribute unless OTEL_SERVICE_NAME
    or OTEL_RESOURCE_ATTRIBUTES say otherwise. Raises TracingUnavailableError naming a
    missing package. Call ``shutdown()`` on the result at exit to flush the last spans.
    """
    global propagating
    missing = _missing_package(mode)
    if missing:
        raise TracingUnavailableError(f"--tracing {mode} needs {missing}")
    if mode == "off":
        return None
    from opentelemetry import trace

    from missions.tracing._provider import provider
    from missions.tracing._tracing import Tracing

    tracer_provider = provider(mode, service_name, instance_id)
    # Global, so spans that handlers start themselves join the attempt's trace.
    trace.set_tracer_provider(tracer_provider)
    propagating = True
    return Tracing(tracer_provider)


def __getattr__(name: str) -> Any:
    # Tracing is importable only with the packages installed, and only when asked for.
    if name == "Tracing":
        from missions.tracing._tracing import Tracing

        return Tracing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def inject(headers: dict[str, Any]) -> None:
    """Add the current span's W3C trace context to a message's ``headers``; only while ``propagating``."""
    from missions.tracing._propagation import inject_current

    inject_current(headers)
