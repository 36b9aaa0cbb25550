"""Handlers of mission types no built-in serves, for the routing tests
(`mission-worker --handlers tests.e2e.routed_handlers`)."""

from __future__ import annotations

from typing import Any

from worker_service import MissionContext, handler


@handler("resize")
async def resize(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Returns the size it was asked for."""
    return {"width": payload.get("width", 640)}


@handler("report")
async def report(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Returns the worker's view of the mission."""
    return {"attempt": ctx.attempt}
