"""run_attempt: one attempt under a deadline, and how its outcome is classified."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf import struct_pb2

from missions.errors import NonRetryableError
from missions.outcomes import Outcome
from tests.unit.factories import mission_context, struct
from worker_service.context import MissionContext
from worker_service.handlers import builtin, default_registry
from worker_service.handlers.registry import Handler, HandlerRegistry
from worker_service.runner import run_attempt

LONG = timedelta(seconds=30)


async def _run(
    fn: Handler, payload: struct_pb2.Struct | None = None, timeout: timedelta = LONG, shape: type[Any] | None = None
) -> Outcome:
    registry = HandlerRegistry()
    registry.register("job", fn, payload=shape)
    ctx, _ = mission_context("job")
    return await run_attempt(registry, ctx, payload or struct(), timeout)


async def test_success_returns_the_dict_as_a_struct() -> None:
    seen: list[tuple[MissionContext, dict[str, Any]]] = []

    async def add(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        seen.append((ctx, payload))
        return {"sum": payload["a"] + payload["b"], "labels": dict(ctx.labels)}

    outcome = await _run(add, struct(a=1, b=2))
    assert outcome.error is None
    assert outcome.result == struct(sum=3, labels={"team": "ops"})
    assert outcome.duration >= timedelta(0)
    [(ctx, payload)] = seen
    assert ctx.mission_type == "job"
    assert payload == {"a": 1, "b": 2}


async def test_none_result_is_an_empty_struct() -> None:
    async def nothing(ctx: MissionContext, payload: dict[str, Any]) -> None:
        return None

    outcome = await _run(nothing)
    assert outcome.error is None
    assert outcome.result == struct_pb2.Struct()
    assert outcome.result is not None


@pytest.mark.parametrize("result", [[1, 2], "done", 42])
async def test_a_result_that_is_not_a_dict_fails_without_retry(result: object) -> None:
    async def wrong(ctx: MissionContext, payload: dict[str, Any]) -> object:
        return result

    outcome = await _run(wrong)
    assert outcome.result is None
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("NonRetryableError", False)
    assert type(result).__name__ in outcome.error.message


async def test_a_dict_that_is_not_json_like_fails_without_retry() -> None:
    async def wrong(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        return {"when": object()}

    outcome = await _run(wrong)
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("NonRetryableError", False)


class QuotaExceededError(Exception):
    pass


async def test_an_exception_is_retryable_and_named_after_its_class() -> None:
    async def flaky(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        raise QuotaExceededError("try later")

    outcome = await _run(flaky)
    assert outcome.result is None
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message, outcome.error.retryable) == (
        "QuotaExceededError",
        "try later",
        True,
    )


async def test_an_exception_without_a_message_is_described_by_its_repr() -> None:
    async def flaky(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        raise KeyError

    outcome = await _run(flaky)
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message) == ("KeyError", "KeyError()")


async def test_a_long_message_is_truncated() -> None:
    async def verbose(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("x" * 10_000)

    outcome = await _run(verbose)
    assert outcome.error is not None
    assert outcome.error.message == "x" * 4096


class BadInputError(NonRetryableError):
    pass


@pytest.mark.parametrize("kind", [NonRetryableError, BadInputError])
async def test_non_retryable_error_is_not_retried(kind: type[NonRetryableError]) -> None:
    async def refuse(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        raise kind("payload is wrong")

    outcome = await _run(refuse)
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message, outcome.error.retryable) == (
        kind.__name__,
        "payload is wrong",
        False,
    )


async def test_timeout_cancels_the_handler_and_is_retryable() -> None:
    handler_cancelled = asyncio.Event()

    async def hang(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            handler_cancelled.set()
            raise
        return {}

    registry = HandlerRegistry()
    registry.register("job", hang)
    ctx, _ = mission_context("job")
    outcome = await asyncio.wait_for(
        run_attempt(registry, ctx, struct(), timedelta(milliseconds=50), cancel_grace=timedelta(0)), 5
    )
    assert outcome.result is None
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("DeadlineExceeded", True)
    assert "0:00:00.050000" in outcome.error.message
    assert ctx.cancelled.is_set()
    assert handler_cancelled.is_set()
    assert outcome.duration >= timedelta(milliseconds=50)


async def test_a_handlers_own_timeout_error_is_not_the_deadline() -> None:
    async def upstream_timeout(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        raise TimeoutError("upstream did not answer")

    registry = HandlerRegistry()
    registry.register("job", upstream_timeout)
    ctx, _ = mission_context("job")
    outcome = await run_attempt(registry, ctx, struct(), LONG)
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message, outcome.error.retryable) == (
        "TimeoutError",
        "upstream did not answer",
        True,
    )
    assert not ctx.cancelled.is_set()


async def test_an_unknown_type_fails_without_retry() -> None:
    called = False

    async def other(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal called
        called = True
        return {}

    registry = HandlerRegistry()
    registry.register("zeta", other)
    registry.register("alpha", other)
    ctx, _ = mission_context("nope")
    outcome = await run_attempt(registry, ctx, struct(), LONG)
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("UnknownMissionType", False)
    assert "'nope'" in outcome.error.message
    assert "alpha, zeta" in outcome.error.message
    assert not called


async def test_a_plain_function_runs_in_a_worker_thread() -> None:
    def blocking(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        thread = threading.current_thread()
        return {"main": thread is threading.main_thread(), "name": thread.name, "echo": payload["x"]}

    outcome = await _run(blocking, struct(x="y"))
    assert outcome.error is None
    assert outcome.result is not None
    assert outcome.result["main"] is False
    assert outcome.result["echo"] == "y"


async def test_an_async_handler_runs_on_the_event_loop() -> None:
    loop = asyncio.get_running_loop()

    async def on_loop(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        return {"same_loop": asyncio.get_running_loop() is loop}

    outcome = await _run(on_loop)
    assert outcome.result == struct(same_loop=True)


async def test_a_cooperative_plain_function_sees_the_deadline() -> None:
    finished = threading.Event()

    def poll(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            while not ctx.cancelled.is_set():
                finished.wait(0.005)
            return {}
        finally:
            finished.set()

    registry = HandlerRegistry()
    registry.register("job", poll)
    ctx, _ = mission_context("job")
    outcome = await asyncio.wait_for(run_attempt(registry, ctx, struct(), timedelta(milliseconds=50)), 5)
    assert outcome.error is not None
    assert outcome.error.type == "DeadlineExceeded"
    assert await asyncio.to_thread(finished.wait, 5)


async def test_a_plain_function_error_is_classified_like_an_async_one() -> None:
    def broken(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        raise ZeroDivisionError("division by zero")

    outcome = await _run(broken)
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("ZeroDivisionError", True)


async def test_an_interrupted_handler_that_ignores_the_signal_is_cancelled_after_the_grace() -> None:
    handler_cancelled = asyncio.Event()
    running = asyncio.Event()

    async def stubborn(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            handler_cancelled.set()
            raise
        return {}

    registry = HandlerRegistry()
    registry.register("job", stubborn)
    ctx, _ = mission_context("job")
    attempt = asyncio.ensure_future(
        run_attempt(registry, ctx, struct(), timedelta(seconds=60), cancel_grace=timedelta(milliseconds=20))
    )
    await asyncio.wait_for(running.wait(), 5)
    ctx.cancelled.set()
    outcome = await asyncio.wait_for(attempt, 5)
    assert outcome.error is not None and outcome.error.type == "Interrupted"
    assert handler_cancelled.is_set()


async def test_a_cooperative_handler_that_returns_when_interrupted_is_still_interrupted() -> None:
    async def polite(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        await ctx.cancelled.wait()
        return {"stopped": True}

    registry = HandlerRegistry()
    registry.register("job", polite)
    ctx, _ = mission_context("job")
    attempt = asyncio.ensure_future(
        run_attempt(registry, ctx, struct(), timedelta(seconds=60), cancel_grace=timedelta(seconds=30))
    )
    ctx.cancelled.set()
    outcome = await asyncio.wait_for(attempt, 5)
    assert outcome.result is None
    assert outcome.error is not None and outcome.error.type == "Interrupted"


@pytest.mark.parametrize(
    ("seconds", "message"),
    [("abc", "payload.seconds: expected a number, got 'abc'"), (-1, "payload.seconds: must not be negative")],
)
async def test_sleep_with_seconds_it_can_never_accept_fails_once_without_retry(seconds: object, message: str) -> None:
    assert default_registry.get("sleep") is builtin.sleep  # as its module registered it
    ctx, progress = mission_context("sleep")
    outcome = await run_attempt(default_registry, ctx, struct(seconds=seconds), LONG)
    assert outcome.result is None
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message, outcome.error.retryable) == ("InvalidPayload", message, False)
    assert progress.reports == []  # the handler never ran


@dataclass(frozen=True)
class Order:
    item: str
    quantity: int = 1


async def test_a_declared_payload_reaches_the_handler_as_its_dataclass() -> None:
    seen: list[Order] = []

    def take(ctx: MissionContext, payload: Order) -> dict[str, Any]:
        seen.append(payload)
        return {}

    outcome = await _run(take, struct(item="tea", quantity=2), shape=Order)
    assert outcome.error is None
    assert seen == [Order("tea", 2)]
    assert type(seen[0].quantity) is int


async def test_a_payload_that_does_not_fit_its_dataclass_fails_before_the_handler_runs() -> None:
    called = False

    async def take(ctx: MissionContext, payload: Order) -> dict[str, Any]:
        nonlocal called
        called = True
        return {}

    outcome = await _run(take, struct(quantity=2), shape=Order)
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message, outcome.error.retryable) == (
        "InvalidPayload",
        "payload.item: required",
        False,
    )
    assert not called


@pytest.mark.parametrize("kind", [TypeError, ValueError])
async def test_a_handlers_own_type_or_value_error_is_retried(kind: type[Exception]) -> None:
    async def take(ctx: MissionContext, payload: Order) -> dict[str, Any]:
        raise kind("the shop is closed")

    outcome = await _run(take, struct(item="tea"), shape=Order)
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == (kind.__name__, True)


@dataclass
class Checked:
    value: int

    def __post_init__(self) -> None:
        raise ZeroDivisionError("a bug in the check itself")


async def test_an_ordinary_exception_from_a_payload_check_is_classified_like_handler_code() -> None:
    async def take(ctx: MissionContext, payload: Checked) -> dict[str, Any]:
        return {}

    outcome = await _run(take, struct(value=1), shape=Checked)
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("ZeroDivisionError", True)
