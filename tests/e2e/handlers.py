"""Handlers that only the fault tests load (`mission-worker --handlers tests.e2e.handlers`)."""

from __future__ import annotations

import os
import time
from typing import Any

from worker_service import MissionContext, handler


@handler("crash")
async def crash(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Kills its worker process at once, every time: a poison mission."""
    os._exit(137)


@handler("stubborn")
async def stubborn(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Sleeps ``seconds`` ignoring ctx.cancelled, so only a task cancellation stops it."""
    import asyncio

    await asyncio.sleep(float(payload.get("seconds", 60)))
    return {}


@handler("tally")
def tally(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Appends one line per run (mission id, attempt) to the file ``path``: how many times
    the handler really ran, whatever the events say."""
    with open(payload["path"], "a") as runs:
        runs.write(f"{ctx.mission_id} {ctx.attempt}\n")
    return {}


@handler("gate")
def gate(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Holds its worker (for two minutes at most) until the file ``path`` exists."""
    deadline = time.monotonic() + 120
    while not os.path.exists(payload["path"]) and time.monotonic() < deadline:
        time.sleep(0.001)
    return {}
