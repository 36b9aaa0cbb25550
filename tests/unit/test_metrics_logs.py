"""Structured logs: a line about a mission carries its id and correlation id, in JSON and in text."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest

from missions.logs import configure_logging, mission_context, mission_fields

log = logging.getLogger("tests.logs")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_json_lines_carry_the_fields_given_with_extra(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    log.info("mission %s queued", "m1", extra=mission_fields("m1", "corr-1", "echo"))
    log.info("nothing about a mission")
    first, second = (json.loads(line) for line in _lines(capsys))
    assert first["message"] == "mission m1 queued"
    assert (first["mission_id"], first["correlation_id"], first["mission_type"]) == ("m1", "corr-1", "echo")
    assert "attempt" not in first  # attempt 0: not known
    assert "mission_id" not in second


async def test_every_line_inside_a_mission_context_carries_its_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")

    def in_a_thread() -> None:
        log.info("handler line")

    with mission_context(mission_fields("m1", "corr-1", "echo", attempt=2)):
        log.info("attempt started")
        await asyncio.to_thread(in_a_thread)
        log.info("overridden", extra=mission_fields("m2", "corr-2"))
    log.info("after")
    started, handler, overridden, after = (json.loads(line) for line in _lines(capsys))
    for entry in (started, handler):
        assert (entry["mission_id"], entry["correlation_id"], entry["attempt"]) == ("m1", "corr-1", 2)
    assert (overridden["mission_id"], overridden["correlation_id"]) == ("m2", "corr-2")
    assert "mission_id" not in after


def test_text_lines_show_the_fields_after_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")
    log.info("mission m1 queued", extra=mission_fields("m1", "corr-1", "echo", attempt=1))
    log.info("plain")
    queued, plain = _lines(capsys)
    assert queued.endswith("mission m1 queued mission_id=m1 mission_type=echo attempt=1 correlation_id=corr-1")
    assert plain.endswith("tests.logs: plain")
