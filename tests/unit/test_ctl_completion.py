"""missionctl completion: the bash and zsh scripts parse, name every command and option, and complete."""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess

import pytest

from missions import ctl
from missions.ctl.completion import script
from missions.ctl.parser import build_parser

pytestmark = pytest.mark.timeout(30)

needs_zsh = pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(subparsers.choices)


def long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")}


@pytest.fixture(params=["bash", "zsh"])
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_script_names_every_command_and_option(shell: str) -> None:
    text = script(build_parser(), shell)
    for name, parser in commands().items():
        assert name in text
        for flag in long_options(parser):
            assert flag in text, (name, flag)
    for event_type in ("created", "dead_lettered", "redriven"):  # watch --type choices
        assert event_type in text


def test_completion_prints_the_script_without_a_server(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["completion", shell], connect=lambda server: pytest.fail("no RPC may be made")) == 0
    assert capsys.readouterr().out == script(build_parser(), shell)


def test_completion_wants_a_known_shell(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["completion", "fish"]) == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err


def test_bash_script_parses(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "missionctl.bash"
    path.write_text(script(build_parser(), "bash"))
    subprocess.run(["bash", "-n", str(path)], check=True, timeout=20)


def complete_in_bash(tmp_path: pathlib.Path, line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end), through the generated function."""
    path = tmp_path / "missionctl.bash"
    path.write_text(script(build_parser(), "bash"))
    program = (
        'source "$1"; read -ra COMP_WORDS <<< "$2"; [[ "$2" == *" " ]] && COMP_WORDS+=("");'
        ' COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _missionctl; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program, "bash", str(path), line], capture_output=True, text=True, check=True, timeout=20
    )
    return done.stdout.split()


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("missionctl wa", ["watch"]),
        ("missionctl --server host:1 -o json su", ["submit"]),
        ("missionctl -o j", ["json", "jsonl"]),
        ("missionctl watch --type c", ["created", "completed", "cancelled"]),
        ("missionctl list --state r", ["running", "retrying"]),
        ("missionctl submit echo --priority ", ["low", "normal", "high", "critical"]),
        ("missionctl top --on", ["--once"]),
        ("missionctl top --ser", ["--server"]),
        ("missionctl completion ", ["bash", "zsh"]),
        ("missionctl get --server ", []),  # an address: nothing to guess
    ],
)
def test_bash_completes_commands_options_and_choices(tmp_path: pathlib.Path, line: str, offered: list[str]) -> None:
    assert complete_in_bash(tmp_path, line) == offered


def test_bash_completes_file_names_for_path_options(tmp_path: pathlib.Path) -> None:
    (tmp_path / "ca.pem").write_text("")
    assert complete_in_bash(tmp_path, f"missionctl --tls-ca {tmp_path}/ca") == [f"{tmp_path}/ca.pem"]


@needs_zsh
def test_zsh_script_parses(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "_missionctl"
    path.write_text(script(build_parser(), "zsh"))
    subprocess.run(["zsh", "-n", str(path)], check=True, timeout=20)


@needs_zsh
def test_zsh_registers_the_function_sourced_or_autoloaded(tmp_path: pathlib.Path) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "_missionctl").write_text(script(build_parser(), "zsh"))
    init = f"autoload -Uz compinit && compinit -u -d {tmp_path}/zcompdump"
    for setup in (f"fpath=({functions} $fpath); {init}", f"{init}; source {functions}/_missionctl"):
        done = subprocess.run(
            ["zsh", "-f", "-c", f"{setup}; print -r -- $_comps[missionctl]"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        )
        assert done.stdout.strip() == "_missionctl", done.stderr
