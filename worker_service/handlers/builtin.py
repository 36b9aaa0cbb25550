"""Built-in handlers for demos, tests and benchmarks: noop, echo, sleep, fail.

A worker serves them when started without ``--handlers`` or with ``builtin`` among them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from missions.errors import InvalidPayload, NonRetryableError
from worker_service.context import MissionContext
from worker_service.handlers.registry import handler

__all__ = ["FailError", "FailPayload", "SleepPayload", "echo", "fail", "noop", "sleep"]


@handler("noop")
async def noop(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Does nothing and returns an empty result."""
    return {}


@handler("echo")
async def echo(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Returns its payload."""
    return payload


@dataclass(frozen=True)
class SleepPayload:
    """How long ``sleep`` sleeps."""

    seconds: float = 1.0

    def __post_init__(self) -> None:
        if not self.seconds >= 0:  # NaN too
            raise InvalidPayload("seconds", "must not be negative")


@handler("sleep", payload=SleepPayload)
async def sleep(ctx: MissionContext, payload: SleepPayload) -> dict[str, Any]:
    """Sleeps ``seconds``, reporting progress 10 times; returns early when interrupted."""
    seconds = payload.seconds
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


@dataclass(frozen=True)
class FailPayload:
    """How ``fail`` fails: ``fail_times`` None fails every attempt."""

    message: str = "failed on purpose"
    retryable: bool = True
    fail_times: int | None = None


@handler("fail", payload=FailPayload)
async def fail(ctx: MissionContext, payload: FailPayload) -> dict[str, Any]:
    """Fails the first ``fail_times`` attempts with ``message``, non-retryably if ``retryable`` is false."""
    if payload.fail_times is None or ctx.attempt <= payload.fail_times:
        if not payload.retryable:
            raise NonRetryableError(payload.message)
        raise FailError(payload.message)
    return {"attempts": ctx.attempt}
