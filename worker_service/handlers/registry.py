"""Handler registration: ``@handler("name")`` and loading handler modules by name."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from worker_service.context import MissionContext

__all__ = ["Handler", "HandlerRegistry", "default_registry", "handler", "load_modules"]

Payload = dict[str, Any]


class Handler(Protocol):
    """An async or plain function taking the context and the payload, returning a dict."""

    def __call__(self, ctx: MissionContext, payload: Payload, /) -> Any: ...


class HandlerRegistry:
    """Handler functions by mission type."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, fn: Handler) -> None:
        existing = self._handlers.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"handler {name!r} is already registered by {existing.__module__}")
        self._handlers[name] = fn

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def is_async(self, name: str) -> bool:
        return inspect.iscoroutinefunction(self._handlers[name])

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)


default_registry = HandlerRegistry()


def handler(name: str, registry: HandlerRegistry | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of missions of type ``name``.

    ``async def`` handlers run on the worker's event loop; plain functions run in a thread.
    """

    def register(fn: Handler) -> Handler:
        (registry or default_registry).register(name, fn)
        return fn

    return register


def load_modules(modules: Iterable[str]) -> None:
    """Import handler modules (``pkg.module``) so their ``@handler`` decorators run."""
    for module in modules:
        importlib.import_module(module)
