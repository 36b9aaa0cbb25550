"""Logging set-up for the entry points (libraries only call logging.getLogger).

A line about one mission carries its fields (``mission_id``, ``correlation_id``, and
``mission_type`` and ``attempt`` when known): as JSON keys with ``--log-format json``,
as ``key=value`` after the message in text. A caller gives them with
``extra=mission_fields(...)``, or for everything logged inside ``with
mission_context(...)`` in that task: the worker wraps each attempt in one, so the
outcome lines of missions.outcomes and a handler's own lines carry them too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

__all__ = ["MISSION_FIELDS", "configure_logging", "mission_context", "mission_fields"]

# The record attributes that say which mission a line is about, in output order.
MISSION_FIELDS = ("mission_id", "mission_type", "attempt", "correlation_id")

_context: ContextVar[Mapping[str, object] | None] = ContextVar("mission_log_fields", default=None)


def mission_fields(mission_id: str, correlation_id: str, mission_type: str = "", attempt: int = 0) -> dict[str, object]:
    """The fields of a line about one mission, for ``extra=``; an empty type or attempt 0 is left out."""
    fields: dict[str, object] = {"mission_id": mission_id, "correlation_id": correlation_id}
    if mission_type:
        fields["mission_type"] = mission_type
    if attempt:
        fields["attempt"] = attempt
    return fields


@contextlib.contextmanager
def mission_context(fields: Mapping[str, object]) -> Iterator[None]:
    """Add ``fields`` to every line logged in this task (and threads it starts with
    asyncio.to_thread, which copy the context) until the block ends."""
    token = _context.set(fields)
    try:
        yield
    finally:
        _context.reset(token)


class _AddMissionContext(logging.Filter):
    """Copies the task's mission fields onto each record; ``extra=`` fields win."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        if fields:
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


def _fields_of(record: logging.LogRecord) -> Iterator[tuple[str, object]]:
    for name in MISSION_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            yield name, value


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields_of(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _TextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = " ".join(f"{name}={value}" for name, value in _fields_of(record))
        return f"{line} {fields}" if fields else line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send logs to stderr as text lines or as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_AddMissionContext())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aio-pika logs every reconnect attempt at length; our own lines say what matters.
    logging.getLogger("aio_pika").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("aiormq").setLevel(max(root.level, logging.WARNING))
