"""Built-in handlers for demos, tests and benchmarks: noop, echo, sleep, fail."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from missions.errors import NonRetryableError
from worker_service.context import MissionContext
from worker_service.handlers.registry import handler

__all__ = ["echo", "fail", "noop", "sleep"]


@handler("noop")
async def noop(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Does nothing and returns an empty result."""
    return {}


@handler("echo")
async def echo(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Returns its payload."""
    return payload


@handler("sleep")
async def sleep(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleeps ``seconds`` (default 1), reporting progress 10 times; returns early when interrupted."""
    seconds = float(payload.get("seconds", 1.0))
    if seconds < 0:
        raise NonRetryableError("seconds must not be negative")
    steps = 10
    for step in range(1, steps + 1):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.cancelled.wait(), seconds / steps)
        if ctx.cancelled.is_set():
            return {"slept": seconds * (step - 1) / steps}  # the runner records the attempt as interrupted
        await ctx.report_progress(step / steps, f"slept {seconds * step / steps:.2f}s of {seconds:g}s")
    return {"slept": seconds}


class FailError(Exception):
    """Raised by the ``fail`` handler on the attempts it is asked to fail."""


@handler("fail")
async def fail(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fails the first ``fail_times`` attempts (default: every attempt) with ``message``.

    ``retryable: false`` makes the failure non-retryable.
    """
    fail_times = payload.get("fail_times")
    if fail_times is None or ctx.attempt <= int(fail_times):
        message = str(payload.get("message", "failed on purpose"))
        if payload.get("retryable", True) is False:
            raise NonRetryableError(message)
        raise FailError(message)
    return {"attempts": ctx.attempt}
