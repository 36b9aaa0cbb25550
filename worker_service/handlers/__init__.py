"""Handler registration and the built-in handlers (``builtin``, registered only when loaded)."""

from worker_service.handlers.registry import (
    BUILTIN_MODULE,
    Handler,
    HandlerModuleError,
    HandlerRegistry,
    default_registry,
    handler,
    load_modules,
)

__all__ = [
    "BUILTIN_MODULE",
    "Handler",
    "HandlerModuleError",
    "HandlerRegistry",
    "default_registry",
    "handler",
    "load_modules",
]
