"""Handler registration: @handler, duplicates, declared payloads, and loading handler modules."""

from __future__ import annotations

import importlib
import pathlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import worker_service.handlers
from worker_service import MissionContext, handler
from worker_service.handlers import (
    BUILTIN_MODULE,
    HandlerModuleError,
    HandlerRegistry,
    default_registry,
    load_modules,
)
from worker_service.handlers import registry as registry_module

BUILTIN_TYPES = ["echo", "fail", "noop", "sleep"]


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


def test_a_declared_payload_is_parsed_and_an_undeclared_one_passed_as_is() -> None:
    @dataclass(frozen=True)
    class Job:
        count: int

    registry = HandlerRegistry()

    @handler("typed", registry, payload=Job)
    async def typed(ctx: MissionContext, payload: Job) -> dict[str, Any]:
        return {}

    @handler("plain", registry)
    async def plain(ctx: MissionContext, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    assert registry.parse_payload("typed", {"count": 2.0}) == Job(2)
    data = {"count": "many"}
    assert registry.parse_payload("plain", data) is data


@pytest.fixture
def fresh_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A worker process that has loaded no handler module yet, working in ``tmp_path``.

    Its default registry is empty and the built-in module not imported; this process's own
    are put back afterwards, as are sys.path and the working directory.
    """
    importlib.import_module(BUILTIN_MODULE)  # so that there is something to put back
    monkeypatch.setattr(registry_module, "default_registry", HandlerRegistry())
    monkeypatch.delitem(sys.modules, BUILTIN_MODULE)
    monkeypatch.delattr(worker_service.handlers, "builtin")
    monkeypatch.setattr(sys, "path", [path for path in sys.path if path not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in [name for name in sys.modules if name.startswith("handlers_for_tests_")]:
        del sys.modules[name]


def _package(directory: pathlib.Path, handlers: str) -> str:
    """A package in ``directory`` whose ``handlers`` module has the given source; returns that module's name."""
    package = directory / f"handlers_for_tests_{uuid.uuid4().hex}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "handlers.py").write_text(textwrap.dedent(handlers))
    return f"{package.name}.handlers"


RESIZE = """
    from worker_service import handler

    @handler("resize-image")
    async def resize(ctx, payload):
        return {"resized": True}
"""


def test_a_handler_module_is_imported_from_the_working_directory(fresh_worker: pathlib.Path) -> None:
    module = _package(fresh_worker, RESIZE)
    assert load_modules([module]) == ["resize-image"]
    assert module in sys.modules
    assert sys.path[0] == str(fresh_worker)
    # Listed twice, or loaded again: the module is cached, so its handlers are not registered twice.
    assert load_modules([module, module]) == ["resize-image"]
    assert sys.path.count(str(fresh_worker)) == 1


def test_no_modules_means_the_builtin_handlers(fresh_worker: pathlib.Path) -> None:
    assert load_modules([]) == BUILTIN_TYPES


def test_listed_modules_serve_only_their_own_types(fresh_worker: pathlib.Path) -> None:
    assert load_modules([_package(fresh_worker, RESIZE)]) == ["resize-image"]
    assert BUILTIN_MODULE not in sys.modules


def test_builtin_names_the_builtin_handlers_beside_others(fresh_worker: pathlib.Path) -> None:
    assert load_modules(["builtin", _package(fresh_worker, RESIZE)]) == sorted([*BUILTIN_TYPES, "resize-image"])


def test_a_missing_module_is_one_line_naming_it_and_where_it_was_looked_for(fresh_worker: pathlib.Path) -> None:
    missing = f"missing_{uuid.uuid4().hex}"
    with pytest.raises(HandlerModuleError) as caught:
        load_modules(["builtin", f"{missing}.handlers"])
    message = str(caught.value)
    assert message.startswith(
        f"cannot import handler module '{missing}.handlers': No module named '{missing}' (searched: {fresh_worker}, "
    )
    assert "\n" not in message
    assert caught.value.module == f"{missing}.handlers"
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_a_missing_dependency_of_a_handler_module_is_named(fresh_worker: pathlib.Path) -> None:
    module = _package(fresh_worker, "import no_such_dependency_for_tests\n")
    with pytest.raises(
        HandlerModuleError,
        match=rf"^cannot import handler module '{module}': No module named 'no_such_dependency_for_tests' ",
    ):
        load_modules([module])


def test_an_error_in_a_handler_modules_own_code_keeps_its_traceback(fresh_worker: pathlib.Path) -> None:
    with pytest.raises(SyntaxError):
        load_modules([_package(fresh_worker, "def broken(:\n")])
