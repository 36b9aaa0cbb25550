"""Loops: a failing loop is reported, not raised into the TaskGroup, and the others run until stop()."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mission_service.loops import Loop, Loops

TIMEOUT = 10.0


async def _forever() -> None:
    await asyncio.Future()


async def _fails() -> None:
    raise OSError("boom")


async def _returns() -> None:
    return None


async def _cancelled_by_nobody() -> None:
    raise asyncio.CancelledError  # what a library may raise from a broken connection


@pytest.mark.parametrize(
    ("loop", "message", "cause"),
    [
        (_fails, "background task doomed stopped", OSError),
        (_returns, "background task doomed stopped", type(None)),
        (_cancelled_by_nobody, "background task doomed was cancelled", type(None)),
    ],
)
async def test_a_loop_that_ends_is_a_failure_and_the_others_run_until_stop(
    loop: Loop, message: str, cause: type
) -> None:
    async with asyncio.TaskGroup() as group:
        loops = Loops(group)
        running = asyncio.Event()

        async def survivor() -> None:
            running.set()
            await asyncio.Future()

        loops.start("survivor", survivor)
        loops.start("doomed", loop)
        await asyncio.wait_for(loops.failed.wait(), TIMEOUT)
        await asyncio.wait_for(running.wait(), TIMEOUT)
        survivors = [task for task in asyncio.all_tasks() if task.get_name() == "survivor"]
        assert [task.done() for task in survivors] == [False]  # not cancelled by the failure
        loops.stop()
    assert loops.failure is not None
    assert str(loops.failure) == message
    assert isinstance(loops.failure.__cause__, cause)
    assert survivors[0].cancelled()


async def test_a_loop_that_may_end_and_a_stop_are_no_failure() -> None:
    finished = asyncio.Event()

    async def done_early() -> None:
        finished.set()

    async with asyncio.TaskGroup() as group:
        loops = Loops(group)
        loops.start("done-early", done_early, may_end=True)
        loops.start("forever", _forever)
        await asyncio.wait_for(finished.wait(), TIMEOUT)
        loops.stop()
    assert loops.failure is None
    assert not loops.failed.is_set()


async def test_the_first_failure_is_kept_and_a_later_one_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    second = asyncio.Event()

    async def fails_later() -> None:
        await second.wait()
        raise ValueError("later")

    with caplog.at_level(logging.ERROR, logger="mission_service.loops"):
        async with asyncio.TaskGroup() as group:
            loops = Loops(group)
            loops.start("first", _fails)
            loops.start("second", fails_later)
            await asyncio.wait_for(loops.failed.wait(), TIMEOUT)
            second.set()
            await asyncio.wait_for(_logged(caplog, "background task second stopped"), TIMEOUT)
            loops.stop()
    assert str(loops.failure) == "background task first stopped"


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    # The log is the only sign of the second failure: nothing else to wait on.
    while not any(text in record.getMessage() for record in caplog.records):  # noqa: ASYNC110
        await asyncio.sleep(0)
