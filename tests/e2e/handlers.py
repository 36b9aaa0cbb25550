"""Handlers that only the fault tests load (`mission-worker --handlers tests.e2e.handlers`)."""

from __future__ import annotations

import os
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
