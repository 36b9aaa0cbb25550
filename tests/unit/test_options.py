"""missions/options.py: a flag's default from its variable, checked like the flag, and usage errors (exit 2)."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

from mission_service import cli as service_cli
from missions.options import Option, add_options, boolean, integer, seconds
from worker_service import cli as worker_cli

_OPTIONS = (
    Option("--count", "MISSIONS_TEST_COUNT", "how many", integer(1), default="3"),
    Option("--grace", "MISSIONS_TEST_GRACE", "how long", seconds(), default="1.5"),
    Option("--loud", "MISSIONS_TEST_LOUD", "say more", boolean),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test")
    add_options(parser, _OPTIONS)
    return parser


def _refusal(capsys: pytest.CaptureFixture[str], parse: object, *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(list(argv))  # type: ignore[operator]
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_without_flag_or_variable_the_table_default_is_parsed() -> None:
    args = _parser().parse_args([])
    assert (args.count, args.grace, args.loud) == (3, timedelta(seconds=1.5), False)


def test_the_variable_replaces_the_default_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISSIONS_TEST_COUNT", "7")
    monkeypatch.setenv("MISSIONS_TEST_LOUD", "yes")
    args = _parser().parse_args([])
    assert (args.count, args.loud) == (7, True)
    assert _parser().parse_args(["--count", "9"]).count == 9


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISSIONS_TEST_COUNT", "")
    assert _parser().parse_args([]).count == 3


def test_a_bad_variable_is_a_usage_error_naming_the_flag_and_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MISSIONS_TEST_GRACE", "-1")
    parser = _parser()  # building the parser does not read the value yet
    error = _refusal(capsys, parser.parse_args)
    assert "argument --grace: MISSIONS_TEST_GRACE: expected a non-negative number of seconds, got '-1'" in error


@pytest.mark.parametrize(("value", "loud"), [("1", True), ("On", True), ("off", False), ("NO", False)])
def test_a_switch_variable_takes_the_usual_words_in_any_case(
    monkeypatch: pytest.MonkeyPatch, value: str, loud: bool
) -> None:
    monkeypatch.setenv("MISSIONS_TEST_LOUD", value)
    assert _parser().parse_args([]).loud is loud


def test_a_switch_variable_with_another_word_is_a_usage_error_not_a_yes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MISSIONS_TEST_LOUD", "banana")  # a typo must not switch anything on
    parser = _parser()
    error = _refusal(capsys, parser.parse_args)
    assert "argument --loud: MISSIONS_TEST_LOUD: expected one of" in error
    assert _parser().parse_args(["--loud"]).loud is True  # the flag itself needs no value


@pytest.mark.parametrize("value", ["0", "x", "1.5"])
def test_a_bad_flag_is_a_usage_error_naming_it(capsys: pytest.CaptureFixture[str], value: str) -> None:
    assert "argument --count:" in _refusal(capsys, _parser().parse_args, "--count", value)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_durations_are_finite_and_not_negative(capsys: pytest.CaptureFixture[str], value: str) -> None:
    assert "argument --grace:" in _refusal(capsys, _parser().parse_args, f"--grace={value}")


def test_help_names_the_variable_and_the_default_once() -> None:
    text = " ".join(_parser().format_help().split())
    assert "how many [MISSIONS_TEST_COUNT, default 3]" in text
    assert "say more [MISSIONS_TEST_LOUD, default off]" in text
    assert text.count("MISSIONS_TEST_COUNT") == 1


def test_a_bad_concurrency_variable_stops_the_worker_with_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MISSIONS_CONCURRENCY", "abc")
    error = _refusal(capsys, worker_cli.parse)
    assert "argument --concurrency: MISSIONS_CONCURRENCY: expected an integer, got 'abc'" in error


@pytest.mark.parametrize("flag", ["--retry-base", "--drain-timeout", "--cancel-grace"])
def test_a_negative_worker_duration_is_a_usage_error(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    assert f"argument {flag}:" in _refusal(capsys, worker_cli.parse, flag, "-1")


def test_worker_and_service_durations_are_timedeltas() -> None:
    worker = worker_cli.parse(["--retry-base", "0.5", "--heartbeat-interval", "2"])[0]
    assert (worker.retry_base, worker.heartbeat_interval) == (timedelta(seconds=0.5), timedelta(seconds=2))
    service = service_cli.parse(["--shutdown-grace", "2.5"])[0]
    assert (service.shutdown_grace, service.reap_interval) == (timedelta(seconds=2.5), timedelta(seconds=1))
