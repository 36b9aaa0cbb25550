"""Integration: mission-service's composition root (``serve``) in-process against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Awaitable, Callable

import pytest

from mission_service.app import serve
from mission_service.reaper import Reaper
from mission_service.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def _returns(*_: object) -> None:
    return None


async def _cancelled_by_nobody(*_: object) -> None:
    raise asyncio.CancelledError  # what a library may raise from a broken connection


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("reaper_run", "message"),
    [(_returns, "background task reaper stopped"), (_cancelled_by_nobody, "background task reaper was cancelled")],
)
async def test_a_background_task_that_ends_before_a_stop_stops_the_replica_with_an_error(
    namespace: str,
    amqp_url: str,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    reaper_run: Callable[..., Awaitable[None]],
    message: str,
) -> None:
    monkeypatch.setattr(Reaper, "run", reaper_run)
    settings = ServiceSettings(amqp_url=amqp_url, namespace=namespace, listen="127.0.0.1:0", state_dir=tmp_path)
    stop = asyncio.Event()  # never set: the replica must stop by itself
    with pytest.raises(RuntimeError, match=message):
        await serve(settings, stop)
