"""mission-service's flags reach its settings: the watch buffer and the input limits."""

from __future__ import annotations

import pytest

from mission_service import cli
from mission_service.watch import DEFAULT_BUFFER


def test_defaults() -> None:
    settings, _ = cli.parse([])
    assert settings.watch_buffer == DEFAULT_BUFFER
    assert settings.limits.max_payload_bytes == 256 * 1024


def test_watch_buffer_and_limits_from_flags_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISSIONS_WATCH_BUFFER", "50")
    monkeypatch.setenv("MISSIONS_MAX_LABELS", "3")
    settings, _ = cli.parse(["--max-payload-bytes", "1000", "--max-request-bytes", "4096"])
    assert settings.watch_buffer == 50
    assert (settings.limits.max_labels, settings.limits.max_payload_bytes) == (3, 1000)
    assert settings.limits.max_request_bytes == 4096


def test_a_watch_buffer_below_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse(["--watch-buffer", "0"])
    assert exited.value.code == 2
    assert "argument --watch-buffer: must be at least 1, got 0" in capsys.readouterr().err


def test_a_type_length_whose_work_queue_name_rabbitmq_would_refuse_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.parse(["--namespace", "n", "--max-type-length", "248"])[0].limits.max_type_length == 248  # n.work. + 248
    with pytest.raises(SystemExit) as exited:
        cli.parse(["--namespace", "n", "--max-type-length", "249"])
    assert exited.value.code == 2
    assert "--max-type-length 249" in capsys.readouterr().err
