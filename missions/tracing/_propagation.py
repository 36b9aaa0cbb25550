"""W3C trace context in and out of AMQP headers and gRPC metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["from_headers", "from_metadata", "inject_current"]

# Always W3C trace context, not the global (OTEL_PROPAGATORS) choice: the headers are part
# of the wire format, which consumers in other languages read.
_W3C = TraceContextTextMapPropagator()
_NAMES = frozenset(_W3C.fields)
# traceparent is 55 characters and W3C asks to pass on 512 of tracestate: anything
# longer is not a trace context but someone's payload.
_MAX_LENGTH = 1024


def inject_current(headers: dict[str, Any]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to ``headers``; nothing without a span."""
    _W3C.inject(headers)


def from_headers(headers: Mapping[str, Any] | None) -> Context:
    """The trace context a message's headers carry; an empty context when they carry none that is valid."""
    return _extract((headers or {}).items())


def from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context:
    """The trace context of a gRPC call's invocation metadata."""
    return _extract(metadata or ())


def _extract(pairs: Iterable[tuple[str, object]]) -> Context:
    # The propagator validates the format; this keeps it to short strings.
    carrier = {
        key: value for key, value in pairs if key in _NAMES and isinstance(value, str) and len(value) <= _MAX_LENGTH
    }
    return _W3C.extract(carrier, Context()) if carrier else Context()
