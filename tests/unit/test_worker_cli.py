"""mission-worker's flags reach its settings: the ledger's memory of ended missions."""

from __future__ import annotations

import pytest

from worker_service import cli
from worker_service.ledger import DEFAULT_REMEMBER_FINISHED


def test_remember_finished_from_its_default_variable_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.parse([])[0].remember_finished == DEFAULT_REMEMBER_FINISHED
    monkeypatch.setenv("MISSIONS_REMEMBER_FINISHED", "500")
    assert cli.parse([])[0].remember_finished == 500
    assert cli.parse(["--remember-finished", "0"])[0].remember_finished == 0


def test_a_negative_remember_finished_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse(["--remember-finished", "-1"])
    assert exited.value.code == 2
    assert "argument --remember-finished: must be at least 0, got -1" in capsys.readouterr().err
