"""One attempt of one mission: run the handler under a deadline and classify the outcome."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2

from missions.errors import NonRetryableError
from missions.v1 import mission_pb2
from worker_service.context import MissionContext
from worker_service.handlers.registry import HandlerRegistry

__all__ = ["Outcome", "run_attempt"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished attempt: exactly one of ``result`` and ``error`` is set."""

    duration: timedelta
    result: struct_pb2.Struct | None = None
    error: mission_pb2.MissionError | None = None


def _error(kind: str, message: str, retryable: bool) -> mission_pb2.MissionError:
    return mission_pb2.MissionError(type=kind, message=message[:4096], retryable=retryable)


def _to_struct(result: Any) -> struct_pb2.Struct:
    if result is None:
        result = {}
    if not isinstance(result, dict):
        raise NonRetryableError(f"handler returned {type(result).__name__}, expected a dict")
    struct = struct_pb2.Struct()
    try:
        struct.update(result)
    except (ValueError, TypeError) as exc:
        raise NonRetryableError(f"handler result is not JSON-like: {exc}") from exc
    return struct


async def run_attempt(
    registry: HandlerRegistry, ctx: MissionContext, payload: struct_pb2.Struct, timeout: timedelta
) -> Outcome:
    """Run the handler for ``ctx.mission_type``; never raises except on cancellation.

    Handler exceptions become retryable errors named after their class, except
    NonRetryableError. Passing ``timeout`` cancels the handler and fails the attempt
    with the retryable error type ``DeadlineExceeded``. An unknown type fails with the
    non-retryable ``UnknownMissionType``.
    """
    started = time.monotonic()

    def elapsed() -> timedelta:
        return timedelta(seconds=time.monotonic() - started)

    fn = registry.get(ctx.mission_type)
    if fn is None:
        known = ", ".join(registry.names)
        message = f"no handler for mission type {ctx.mission_type!r} on this worker (known: {known})"
        return Outcome(elapsed(), error=_error("UnknownMissionType", message, retryable=False))
    arguments = json_format.MessageToDict(payload)
    deadline = asyncio.timeout(timeout.total_seconds())
    try:
        async with deadline:
            if registry.is_async(ctx.mission_type):
                raw = await fn(ctx, arguments)
            else:
                raw = await asyncio.to_thread(fn, ctx, arguments)
        return Outcome(elapsed(), result=_to_struct(raw))
    except TimeoutError as exc:
        if not deadline.expired():  # the handler's own timeout, not the attempt's
            return Outcome(elapsed(), error=_error(type(exc).__name__, str(exc) or repr(exc), retryable=True))
        ctx.cancelled.set()
        return Outcome(elapsed(), error=_error("DeadlineExceeded", f"attempt exceeded its timeout of {timeout}", True))
    except NonRetryableError as exc:
        return Outcome(elapsed(), error=_error(type(exc).__name__, str(exc), retryable=False))
    except Exception as exc:
        return Outcome(elapsed(), error=_error(type(exc).__name__, str(exc) or repr(exc), retryable=True))
