"""Handler registration: @handler, duplicates, and loading handler modules."""

from __future__ import annotations

import pathlib
import sys
import types
import uuid
from typing import Any

import pytest

from worker_service import MissionContext, handler
from worker_service.handlers import HandlerRegistry, default_registry, load_modules


def test_handler_registers_into_the_given_registry() -> None:
    registry = HandlerRegistry()

    @handler("beta", registry)
    async def beta(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    @handler("alpha", registry=registry)
    def alpha(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    assert registry.get("alpha") is alpha
    assert registry.get("beta") is beta
    assert registry.get("gamma") is None
    assert registry.names == ["alpha", "beta"]
    assert registry.is_async("beta")
    assert not registry.is_async("alpha")
    assert default_registry.get("alpha") is not alpha


def test_registering_the_same_function_twice_is_harmless() -> None:
    registry = HandlerRegistry()

    async def job(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    registry.register("job", job)
    registry.register("job", job)
    assert registry.names == ["job"]


def test_a_name_taken_by_another_function_is_refused() -> None:
    registry = HandlerRegistry()

    @handler("job", registry)
    async def first(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match=r"'job' is already registered by tests\.unit\.test_registry"):

        @handler("job", registry)
        async def second(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
            return {}

    assert registry.get("job") is first


def test_the_builtin_handlers_are_in_the_default_registry() -> None:
    assert {"echo", "fail", "noop", "sleep"} <= set(default_registry.names)


def test_load_modules_imports_a_handler_module(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    holder = types.ModuleType("registry_holder_for_tests")
    registry = HandlerRegistry()
    holder.registry = registry  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, holder.__name__, holder)
    name = f"custom_handlers_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "from registry_holder_for_tests import registry\n"
        "from worker_service import handler\n"
        "\n"
        "@handler('resize-image', registry)\n"
        "async def resize(ctx, payload):\n"
        "    return {'resized': True}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        load_modules([name])
        assert registry.names == ["resize-image"]
        assert name in sys.modules
        # Importing again (e.g. listed twice) finds the module cached: no duplicate error.
        load_modules([name, name])
        assert registry.names == ["resize-image"]
    finally:
        sys.modules.pop(name, None)


def test_load_modules_fails_on_a_missing_module() -> None:
    with pytest.raises(ModuleNotFoundError):
        load_modules([f"no_such_module_{uuid.uuid4().hex}"])
