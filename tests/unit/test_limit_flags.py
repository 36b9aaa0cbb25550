"""The input-limit flags: documented defaults, MISSIONS_* variables, refusals that name the flag."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import timedelta

import pytest

from mission_service.limit_flags import add_limit_options, limits_from_args
from mission_service.limits import Limits, limit_flag


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mission-service")
    add_limit_options(parser)
    return parser


def _limits(*argv: str) -> Limits:
    parser = _parser()
    return limits_from_args(parser.parse_args(argv), parser)


def _refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as raised:
        _limits(*argv)
    assert raised.value.code == 2
    return capsys.readouterr().err


def test_without_flags_the_limits_are_the_defaults() -> None:
    assert _limits() == Limits()


def test_every_limit_has_a_flag_and_a_variable_and_the_help_states_the_default() -> None:
    text = " ".join(_parser().format_help().split())
    for field in dataclasses.fields(Limits):
        assert limit_flag(field.name) in text
        assert f"[MISSIONS_{field.name.upper()}, default " in text
    assert "[MISSIONS_MAX_PAYLOAD_BYTES, default 262144]" in text
    assert "[MISSIONS_MAX_TIMEOUT, default 86400]" in text


def test_flags_set_the_limits() -> None:
    limits = _limits("--max-payload-bytes", "1000", "--max-labels", "2", "--max-timeout", "60")
    assert limits == dataclasses.replace(
        Limits(), max_payload_bytes=1000, max_labels=2, max_timeout=timedelta(seconds=60)
    )


def test_variables_set_the_limits_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISSIONS_MAX_REQUEST_BYTES", "2000000")
    monkeypatch.setenv("MISSIONS_MAX_PAGE_SIZE", "500")
    limits = _limits("--max-page-size", "700")
    assert (limits.max_request_bytes, limits.max_page_size) == (2_000_000, 700)


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5", ""])
def test_a_flag_that_is_not_a_positive_integer_is_refused_by_name(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert "--max-labels" in _refusal(capsys, "--max-labels", value)


def test_a_bad_variable_is_refused_naming_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MISSIONS_MAX_PAYLOAD_DEPTH", "0")
    assert "--max-payload-depth" in _refusal(capsys)


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["--default-max-attempts", "5", "--max-max-attempts", "4"], ["--default-max-attempts", "--max-max-attempts"]),
        (["--default-page-size", "200", "--max-page-size", "100"], ["--default-page-size", "--max-page-size"]),
        (["--max-request-bytes", "1000"], ["--max-payload-bytes", "--max-request-bytes"]),
    ],
)
def test_contradicting_limits_are_refused_naming_both_flags(
    capsys: pytest.CaptureFixture[str], argv: list[str], flags: list[str]
) -> None:
    error = _refusal(capsys, *argv)
    assert all(flag in error for flag in flags)
