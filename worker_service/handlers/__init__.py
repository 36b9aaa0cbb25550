"""Handler registration and the built-in handlers."""

from worker_service.handlers import builtin
from worker_service.handlers.registry import Handler, HandlerRegistry, default_registry, handler, load_modules

__all__ = ["Handler", "HandlerRegistry", "builtin", "default_registry", "handler", "load_modules"]
