"""One attempt of one mission: run the handler under a deadline and classify the outcome."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2

from missions.errors import NonRetryableError
from missions.outcomes import Outcome
from missions.v1 import mission_pb2
from worker_service.context import MissionContext
from worker_service.handlers.registry import HandlerRegistry

__all__ = ["run_attempt"]


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
    registry: HandlerRegistry,
    ctx: MissionContext,
    payload: struct_pb2.Struct,
    timeout: timedelta,
    cancel_grace: timedelta = timedelta(seconds=5),
) -> Outcome:
    """Run the handler for ``ctx.mission_type``; never raises except on cancellation.

    Handler exceptions become retryable errors named after their class, except
    NonRetryableError. An unknown type fails with the non-retryable ``UnknownMissionType``,
    and a payload that does not fit the handler's declared dataclass with ``InvalidPayload``,
    before the handler is called.

    Stopping: when ``timeout`` passes, or someone sets ``ctx.cancelled`` (a cancellation
    or a shutdown), ``ctx.cancelled`` is set and the handler gets ``cancel_grace`` to
    return; then its task is cancelled (a thread-run handler cannot be interrupted and
    finishes in the background). A timeout fails the attempt with the retryable error
    type ``DeadlineExceeded``; an interruption with ``Interrupted``, even if the handler
    returned a value after noticing ``ctx.cancelled`` (that value is partial).
    """
    started = time.monotonic()

    def elapsed() -> timedelta:
        return timedelta(seconds=time.monotonic() - started)

    fn = registry.get(ctx.mission_type)
    if fn is None:
        known = ", ".join(registry.names)
        message = f"no handler for mission type {ctx.mission_type!r} on this worker (known: {known})"
        return Outcome(elapsed(), error=_error("UnknownMissionType", message, retryable=False))
    try:
        arguments = registry.parse_payload(ctx.mission_type, json_format.MessageToDict(payload))
    except Exception as exc:  # the declared payload's checks, classified like the handler's own errors
        return Outcome(elapsed(), error=_failure(exc))
    if registry.is_async(ctx.mission_type):
        call: asyncio.Future[Any] = asyncio.ensure_future(fn(ctx, arguments))
    else:
        call = asyncio.ensure_future(asyncio.to_thread(fn, ctx, arguments))
    interrupted = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        done, _ = await asyncio.wait(
            {call, interrupted}, timeout=timeout.total_seconds(), return_when=asyncio.FIRST_COMPLETED
        )
        if interrupted not in done and call in done:
            return _settle(call, elapsed())
        if call not in done:
            expired = interrupted not in done
            ctx.cancelled.set()
            await asyncio.wait({call}, timeout=cancel_grace.total_seconds())
            if not call.done():
                call.cancel()
                await asyncio.wait({call})
            if expired:
                message = f"attempt exceeded its timeout of {timeout}"
                return Outcome(elapsed(), error=_error("DeadlineExceeded", message, retryable=True))
        # Whatever an interrupted handler returned is partial: the attempt did not finish.
        return Outcome(elapsed(), error=_error("Interrupted", "the attempt was interrupted", retryable=True))
    finally:
        interrupted.cancel()
        if not call.done():  # we were cancelled ourselves (worker shutdown): stop the handler too
            call.cancel()


def _settle(call: asyncio.Future[Any], elapsed: timedelta) -> Outcome:
    """The outcome of a finished handler call."""
    exc = call.exception()
    if exc is None:
        try:
            return Outcome(elapsed, result=_to_struct(call.result()))
        except NonRetryableError as invalid:
            exc = invalid
    return Outcome(elapsed, error=_failure(exc))


def _failure(exc: BaseException) -> mission_pb2.MissionError:
    retryable = not isinstance(exc, NonRetryableError)
    return _error(type(exc).__name__, str(exc) or repr(exc), retryable=retryable)
