"""The built-in handlers, run against a MissionContext whose progress sink is a recorder."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from missions.errors import InvalidPayload, NonRetryableError
from tests.unit.factories import mission_context
from worker_service.handlers import builtin
from worker_service.handlers.builtin import FailError, FailPayload, SleepPayload
from worker_service.handlers.payloads import payload_parser

TIMEOUT = 5.0


async def test_noop_returns_an_empty_dict() -> None:
    ctx, progress = mission_context("noop")
    assert await builtin.noop(ctx, {"ignored": 1}) == {}
    assert progress.reports == []


async def test_echo_returns_its_payload() -> None:
    ctx, _ = mission_context("echo")
    payload = {"text": "hi", "n": 3.0, "nested": {"list": [1.0, "two"]}}
    assert await builtin.echo(ctx, payload) == payload


@pytest.mark.parametrize(("attempt", "fails"), [(1, True), (2, True), (3, False), (4, False)])
async def test_fail_fails_the_first_fail_times_attempts(attempt: int, fails: bool) -> None:
    ctx, _ = mission_context("fail", attempt=attempt)
    payload = payload_parser(FailPayload)({"fail_times": 2.0, "message": "not yet"})  # numbers arrive as floats
    if fails:
        with pytest.raises(FailError, match="not yet"):
            await builtin.fail(ctx, payload)
    else:
        assert await builtin.fail(ctx, payload) == {"attempts": attempt}


async def test_fail_without_fail_times_fails_every_attempt() -> None:
    ctx, _ = mission_context("fail", attempt=50, max_attempts=50)
    with pytest.raises(FailError, match="failed on purpose"):
        await builtin.fail(ctx, FailPayload())


async def test_fail_with_retryable_false_is_not_retryable() -> None:
    ctx, _ = mission_context("fail")
    with pytest.raises(NonRetryableError, match="give up"):
        await builtin.fail(ctx, FailPayload(retryable=False, message="give up"))


async def test_a_fail_error_is_an_ordinary_retryable_exception() -> None:
    assert not issubclass(FailError, NonRetryableError)


async def test_sleep_reports_progress_ten_times() -> None:
    ctx, progress = mission_context("sleep")
    result = await asyncio.wait_for(builtin.sleep(ctx, SleepPayload(0.02)), TIMEOUT)
    assert result == {"slept": 0.02}
    assert [fraction for fraction, _ in progress.reports] == pytest.approx([n / 10 for n in range(1, 11)])
    assert progress.reports[-1][1] == "slept 0.02s of 0.02s"


async def test_sleep_stops_at_once_when_already_cancelled() -> None:
    ctx, progress = mission_context("sleep")
    ctx.cancelled.set()
    result = await asyncio.wait_for(builtin.sleep(ctx, SleepPayload(3600)), TIMEOUT)
    assert result == {"slept": 0.0}
    assert progress.reports == []


async def test_sleep_stops_early_when_cancelled_midway() -> None:
    ctx, progress = mission_context("sleep")

    def cancel_after_three(fraction: float, message: str) -> None:
        if len(progress.reports) == 3:
            ctx.cancelled.set()

    progress.on_report = cancel_after_three
    result = await asyncio.wait_for(builtin.sleep(ctx, SleepPayload(0.03)), TIMEOUT)
    assert result == {"slept": pytest.approx(0.009)}
    assert len(progress.reports) == 3


class _ObservedEvent(asyncio.Event):
    """An asyncio.Event that tells the test when someone starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.waiting.set()
        return await super().wait()


async def test_sleep_wakes_up_when_cancelled_during_a_long_step() -> None:
    ctx, progress = mission_context("sleep")
    cancelled = ctx.cancelled = _ObservedEvent()
    # A first step of 360 s: only the cancellation can end it within the test's timeout.
    task = asyncio.create_task(builtin.sleep(ctx, SleepPayload(3600)))
    await asyncio.wait_for(cancelled.waiting.wait(), TIMEOUT)
    cancelled.set()
    result = await asyncio.wait_for(task, TIMEOUT)
    assert result == {"slept": 0.0}
    assert progress.reports == []


@pytest.mark.parametrize("seconds", [-1, float("nan")])
def test_sleep_rejects_a_negative_duration(seconds: float) -> None:
    with pytest.raises(InvalidPayload, match=r"^payload\.seconds: must not be negative$"):
        payload_parser(SleepPayload)({"seconds": seconds})


@pytest.mark.parametrize(
    ("shape", "payload", "message"),
    [
        (SleepPayload, {"seconds": "abc"}, "payload.seconds: expected a number, got 'abc'"),
        (FailPayload, {"fail_times": 1.5}, "payload.fail_times: expected an integer, got 1.5"),
        (FailPayload, {"retryable": "no"}, "payload.retryable: expected true or false, got 'no'"),
    ],
)
def test_a_builtin_payload_that_cannot_work_is_refused(
    shape: type[object], payload: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidPayload) as caught:
        payload_parser(shape)(payload)
    assert str(caught.value) == message


def test_the_builtin_payloads_have_defaults() -> None:
    assert payload_parser(SleepPayload)({}) == SleepPayload(seconds=1.0)
    assert payload_parser(FailPayload)({}) == FailPayload("failed on purpose", retryable=True, fail_times=None)
