"""Handler registration: ``@handler("name")`` and loading handler modules by name."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from missions.errors import MissionsError
from worker_service.context import MissionContext
from worker_service.handlers.payloads import payload_parser

__all__ = [
    "BUILTIN_MODULE",
    "Handler",
    "HandlerModuleError",
    "HandlerRegistry",
    "default_registry",
    "handler",
    "load_modules",
]

# What `--handlers builtin` and an empty `--handlers` load.
BUILTIN_MODULE = "worker_service.handlers.builtin"


class Handler(Protocol):
    """An async or plain function taking the context and the payload, returning a dict.

    The payload is a dict, or an instance of the dataclass given as ``payload=`` to ``@handler``.
    """

    def __call__(self, ctx: MissionContext, payload: Any, /) -> Any: ...


H = TypeVar("H", bound=Handler)


class HandlerModuleError(MissionsError):
    """A handler module could not be imported; the message is one line, fit for a start-up error."""

    def __init__(self, module: str, reason: str, searched: Sequence[str]) -> None:
        super().__init__(f"cannot import handler module {module!r}: {reason} (searched: {', '.join(searched)})")
        self.module = module
        self.reason = reason
        self.searched = list(searched)


class HandlerRegistry:
    """Handler functions by mission type, with the payload dataclass each declared."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._parsers: dict[str, Callable[[Any], Any]] = {}

    def register(self, name: str, fn: Handler, payload: type[Any] | None = None) -> None:
        """Register ``fn`` for missions of type ``name``.

        Raises:
            ValueError: another function has the name.
            TypeError: ``payload`` is not a dataclass a JSON payload can fill.
        """
        existing = self._handlers.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"handler {name!r} is already registered by {existing.__module__}")
        if payload is not None:
            self._parsers[name] = payload_parser(payload)
        self._handlers[name] = fn

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def is_async(self, name: str) -> bool:
        return inspect.iscoroutinefunction(self._handlers[name])

    def parse_payload(self, name: str, data: dict[str, Any]) -> Any:
        """What the handler of ``name`` receives: its declared dataclass built from ``data``, or ``data``.

        Raises:
            InvalidPayload: ``data`` does not fit the dataclass.
        """
        parse = self._parsers.get(name)
        return data if parse is None else parse(data)

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)


default_registry = HandlerRegistry()


def handler(
    name: str, registry: HandlerRegistry | None = None, *, payload: type[Any] | None = None
) -> Callable[[H], H]:
    """Register the decorated function as the handler of missions of type ``name``.

    ``async def`` handlers run on the worker's event loop; plain functions run in a thread.
    With ``payload=SomeDataclass`` the handler receives that dataclass, built from the payload;
    a payload that does not fit fails the mission at once with ``InvalidPayload``. An annotation
    a JSON payload cannot carry is a TypeError here, when the module is imported.
    """

    def register(fn: H) -> H:
        (registry or default_registry).register(name, fn, payload)
        return fn

    return register


def load_modules(modules: Iterable[str]) -> list[str]:
    """Import handler modules (``pkg.module``) so their ``@handler`` decorators run.

    A worker serves only the mission types of the modules it loads: none means the built-in
    handlers, and ``builtin`` names them beside others. The working directory is importable.

    Returns:
        The mission types in the default registry, sorted.

    Raises:
        HandlerModuleError: a module, or something it imports, cannot be found or imported.
    """
    names = [BUILTIN_MODULE if module == "builtin" else module for module in modules] or [BUILTIN_MODULE]
    # A console script's sys.path lacks the working directory that `python -m` puts first,
    # and that is where a project's handler package usually is.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            searched = [path or cwd for path in sys.path if os.path.isdir(path or cwd)]
            raise HandlerModuleError(name, reason, searched) from exc
    return default_registry.names
