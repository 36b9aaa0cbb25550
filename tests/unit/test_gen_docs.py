"""scripts/gen_docs.py: deterministic, complete references, and a --check that catches stale files."""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from google.protobuf.descriptor import FileDescriptor

from mission_service.cli import build_parser as service_parser
from missions.ctl.parser import build_parser as ctl_parser
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2, worker_pb2
from worker_service.cli import build_parser as worker_parser

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "gen_docs.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen_docs: Any = _load()


@pytest.fixture(scope="module")
def configuration() -> str:
    return str(gen_docs.configuration_md())


@pytest.fixture(scope="module")
def api() -> str:
    return str(gen_docs.api_md())


def _sections(text: str, level: str) -> dict[str, str]:
    """The text under each heading of ``level`` ("## " or "### "), by heading."""
    parts = re.split(rf"^{level}(.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_output_does_not_depend_on_the_environment_or_the_run(
    configuration: str, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISSIONS_LISTEN", "0.0.0.0:1")
    monkeypatch.setenv("MISSIONS_CONCURRENCY", "99")
    monkeypatch.setenv("MISSIONS_SERVER", "elsewhere:1")
    assert gen_docs.configuration_md() == configuration
    assert gen_docs.api_md() == api
    assert "0.0.0.0:1" not in configuration
    assert "`<host>:<pid>`" in configuration  # --worker-id's default, not this machine's


@pytest.mark.parametrize("build", [service_parser, worker_parser, ctl_parser])
def test_every_argument_of_every_parser_is_documented(
    build: Callable[[], argparse.ArgumentParser], configuration: str
) -> None:
    parser = build()
    programs = _sections(configuration, "## ")
    commands = _sections(programs[parser.prog], "### ")
    for name, sub in [("", parser), *gen_docs.subcommands(parser).items()]:
        section = commands[f"{parser.prog} {name}"] if name else programs[parser.prog]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            # A global option repeated after the command is documented once, with the program.
            where = programs[parser.prog] if action.default is argparse.SUPPRESS else section
            for flag in action.option_strings or [str(action.metavar or action.dest)]:
                assert re.search(rf"`{re.escape(flag)}[ `]", where), f"{parser.prog} {name}: {flag} missing"


@pytest.mark.parametrize("build", [service_parser, worker_parser, ctl_parser])
def test_help_gives_every_argument_a_text_and_every_value_its_default_as_the_reference_does(
    build: Callable[[], argparse.ArgumentParser], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [variable for variable in os.environ if variable.startswith("MISSIONS_")]:
        monkeypatch.delenv(name)
    parser = build()
    for name, sub in [("", parser), *gen_docs.subcommands(parser).items()]:
        for action in gen_docs.documented_actions(sub):
            where = f"{parser.prog} {name} {action.option_strings or action.dest}"
            assert action.help, f"{where}: no help text"
            if not action.option_strings or (action.nargs == 0 and "[" not in action.help):
                continue  # a positional is required; a switch of a command is off unless given
            assert "default" in action.help, f"{where}: --help does not say the default"
            variable = gen_docs.option(action).variable.strip("`")
            if variable and action.dest != "config":
                # A MISSIONS_* option's help ends in "[VARIABLE, ..., default D]", D as the reference says.
                documented = gen_docs.option(action).default.strip("`")
                assert action.help.endswith(f"default {documented}]"), f"{where}: {action.help!r} vs {documented!r}"


@pytest.mark.parametrize("build", [service_parser, worker_parser, ctl_parser])
def test_each_variable_in_the_reference_sets_its_flags_default(
    build: Callable[[], argparse.ArgumentParser], monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = {action.dest: action.default for action in gen_docs.documented_actions(build())}
    tagged = [(action.dest, gen_docs.option(action).variable.strip("`")) for action in build()._actions]
    variables = [(dest, variable) for dest, variable in tagged if variable]
    assert variables
    for dest, variable in variables:
        monkeypatch.setenv(variable, "12345")
        changed = {action.dest: action.default for action in build()._actions}
        monkeypatch.delenv(variable)
        assert changed[dest] != clean[dest], f"{variable} does not set the default of {dest}"


def test_subcommands_are_listed_with_their_options(configuration: str) -> None:
    headings = _sections(configuration, "### ")
    for command in gen_docs.subcommands(ctl_parser()):
        assert f"missionctl {command}" in headings


@pytest.mark.parametrize(
    "file", [events_pb2.DESCRIPTOR, mission_pb2.DESCRIPTOR, mission_service_pb2.DESCRIPTOR, worker_pb2.DESCRIPTOR]
)
def test_every_rpc_message_field_and_enum_value_is_documented(file: FileDescriptor, api: str) -> None:
    headings = _sections(api, "### ")
    for service in file.services_by_name.values():
        for method in service.methods:
            assert f"`rpc {method.name}(`" in headings[method.name]
    for message in file.message_types_by_name.values():
        for field in message.fields:
            assert f"| `{field.name}` | {field.number} |" in headings[message.name]
        assert headings[message.name].split("|")[0].strip(), f"{message.name} has no comment"
    for enum in file.enum_types_by_name.values():
        for value in enum.values:
            assert f"| `{value.name}` | {value.number} |" in headings[enum.name]


def test_a_map_field_is_shown_as_a_map(api: str) -> None:
    assert "| `labels` | 11 | `map<string, string>` |" in api


def test_check_passes_when_fresh_and_fails_when_stale(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out-dir", str(tmp_path)]
    assert gen_docs.main(["--check", *out]) == 1  # missing files are stale too
    assert gen_docs.main(out) == 0
    assert gen_docs.main(["--check", *out]) == 0
    api = tmp_path / "api.md"
    api.write_text(api.read_text() + "edited by hand\n")
    capsys.readouterr()
    assert gen_docs.main(["--check", *out]) == 1
    assert str(api) in capsys.readouterr().err
    assert api.read_text().endswith("edited by hand\n")  # --check writes nothing
