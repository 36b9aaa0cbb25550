"""missionctl settings: flag > MISSIONS_* variable > config file > default, profiles, and the token file check."""

from __future__ import annotations

import pathlib

import pytest

from missions import ctl
from missions.client._settings import ClientSettings, config_path
from missions.ctl.parser import build_parser

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def home(tmp_path: pathlib.Path) -> pathlib.Path:
    """An XDG_CONFIG_HOME of the test's own."""
    return tmp_path / "xdg"


def write_config(home: pathlib.Path, text: str, mode: int = 0o600) -> pathlib.Path:
    path = home / "missions" / "missionctl.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def settings(home: pathlib.Path, *argv: str, **variables: str) -> ClientSettings:
    """The settings of ``missionctl ARGV... stats`` with only these variables set."""
    args = build_parser().parse_args([*argv, "stats"])
    return ClientSettings.from_args(args, {"XDG_CONFIG_HOME": str(home), **variables})


def test_defaults_without_flags_variables_or_file(home: pathlib.Path) -> None:
    assert settings(home) == ClientSettings()
    assert ClientSettings() == ClientSettings(server="127.0.0.1:50051", output="text", color="auto", timeout=10.0)


def test_flag_beats_variable_beats_file_beats_default(home: pathlib.Path) -> None:
    write_config(home, 'server = "file:1"\ntimeout = 3\noutput = "jsonl"\n')

    from_file = settings(home)
    assert (from_file.server, from_file.timeout, from_file.output, from_file.color) == ("file:1", 3.0, "jsonl", "auto")
    from_variable = settings(home, MISSIONS_SERVER="env:2", MISSIONS_TIMEOUT="4.5")
    assert (from_variable.server, from_variable.timeout, from_variable.output) == ("env:2", 4.5, "jsonl")
    from_flag = settings(home, "--server", "flag:3", "-o", "json", MISSIONS_SERVER="env:2")
    assert (from_flag.server, from_flag.output, from_flag.timeout) == ("flag:3", "json", 3.0)


def test_the_parsers_defaults_never_count_as_flags(home: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The parser shows the variables as its defaults (for --help); only ClientSettings applies them.
    monkeypatch.setenv("MISSIONS_TIMEOUT", "7")
    monkeypatch.setenv("MISSIONS_TLS_CA", "/env/ca.pem")
    write_config(home, "timeout = 3\n")

    resolved = settings(home)  # resolved without those variables

    assert (resolved.timeout, resolved.tls_ca) == (3.0, None)


def test_a_flag_after_the_command_counts_too(home: pathlib.Path) -> None:
    args = build_parser().parse_args(["stats", "--server", "late:4", "--color", "never"])
    resolved = ClientSettings.from_args(args, {"XDG_CONFIG_HOME": str(home), "MISSIONS_SERVER": "env:2"})
    assert (resolved.server, resolved.color) == ("late:4", "never")


def test_no_tls_flag_overrides_tls_from_the_file(home: pathlib.Path) -> None:
    write_config(home, "tls = true\n")
    assert settings(home).tls is True
    assert settings(home, "--no-tls").tls is False
    assert settings(home, MISSIONS_TLS="0").tls is False


def test_profile_overrides_the_top_level(home: pathlib.Path) -> None:
    write_config(
        home,
        'server = "dev:1"\ntimeout = 2\n\n[profiles.prod]\nserver = "prod:443"\ntls = true\n',
    )
    assert settings(home).server == "dev:1"
    prod = settings(home, "--profile", "prod")
    assert (prod.server, prod.tls, prod.timeout) == ("prod:443", True, 2.0)
    assert settings(home, MISSIONS_PROFILE="prod").server == "prod:443"
    with pytest.raises(ValueError, match=r"has no profile 'staging' \(profiles: prod\)"):
        settings(home, "--profile", "staging")


def test_paths_in_the_file_are_relative_to_it(home: pathlib.Path) -> None:
    path = write_config(home, 'tls-ca = "certs/ca.pem"\ntoken-file = "/etc/missions/token"\n')
    resolved = settings(home)
    assert resolved.tls_ca == path.parent / "certs" / "ca.pem"
    assert resolved.token_file == pathlib.Path("/etc/missions/token")


def test_config_path_follows_xdg_then_home() -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == pathlib.Path("/x/missions/missionctl.toml")
    assert config_path({"HOME": "/home/ada"}) == pathlib.Path("/home/ada/.config/missions/missionctl.toml")


def test_a_named_config_file_must_exist(home: pathlib.Path, tmp_path: pathlib.Path) -> None:
    other = tmp_path / "other.toml"
    with pytest.raises(ValueError, match="does not exist"):
        settings(home, "--config", str(other))
    other.write_text('server = "named:5"\n')
    assert settings(home, MISSIONS_CONFIG=str(other)).server == "named:5"


def test_a_token_in_a_file_others_can_read_is_refused(home: pathlib.Path) -> None:
    path = write_config(home, 'token = "s3cret"\n', mode=0o644)
    with pytest.raises(ValueError, match=r"holds a token but other users can access it: chmod 600") as refused:
        settings(home)
    assert "s3cret" not in str(refused.value)
    path.chmod(0o600)
    resolved = settings(home)
    assert resolved.token == "s3cret" and "s3cret" not in repr(resolved)
    # Without a token, the file may be readable by anyone.
    path.write_text('server = "shared:1"\n')
    path.chmod(0o644)
    assert settings(home).server == "shared:1"


@pytest.mark.parametrize(
    ("text", "argv", "message"),
    [
        ('servr = "x"\n', [], "unknown key 'servr'"),
        ("timeout = -1\n", [], "timeout: expected a positive number of seconds"),
        ('timeout = "soon"\n', [], "timeout must be a number"),
        ('tls = "yes"\n', [], "tls must be true or false"),
        ('output = "yaml"\n', [], "output: expected one of text, json, jsonl"),
        ("server = \n", [], "Invalid value"),
        ("[profiles]\nprod = 1\n", [], "[profiles.NAME] must be tables"),
        ('[profiles.prod]\ncolour = "never"\n', ["--profile", "prod"], "[profiles.prod] unknown key 'colour'"),
    ],
)
def test_a_bad_file_names_the_file_and_the_key(home: pathlib.Path, text: str, argv: list[str], message: str) -> None:
    path = write_config(home, text)
    with pytest.raises(ValueError, match="config file") as failure:
        settings(home, *argv)
    assert str(path) in str(failure.value) and message in str(failure.value)


def test_a_bad_variable_is_named(home: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="MISSIONS_TIMEOUT: expected a positive number of seconds, got 'abc'"):
        settings(home, MISSIONS_TIMEOUT="abc")
    with pytest.raises(ValueError, match="MISSIONS_OUTPUT: expected one of text, json, jsonl"):
        settings(home, MISSIONS_OUTPUT="yaml")


def test_main_reports_a_bad_config_as_a_usage_error(
    home: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(home, "timeout = 0\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))

    assert ctl.main(["stats"], connect=lambda server: pytest.fail("no RPC may be made")) == 2
    assert "missionctl: error: config file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "dialled"),
    [
        ("localhost", "localhost:50051"),  # gRPC alone would dial port 443
        ("missions.internal:7000", "missions.internal:7000"),
        ("10.0.0.5", "10.0.0.5:50051"),
        ("[::1]:7000", "[::1]:7000"),
        ("[::1]", "[::1]:50051"),
    ],
)
def test_server_without_a_port_means_the_default_port(home: pathlib.Path, given: str, dialled: str) -> None:
    assert settings(home, "--server", given).server == dialled
    assert settings(home, MISSIONS_SERVER=given).server == dialled
    write_config(home, f'server = "{given}"\n')
    assert settings(home).server == dialled


BAD_SERVERS = ["http://localhost:50051", "grpc://h:1", "https://h", "h:1/path", "::1", "h:", "h:port", ":1", "h:70000"]


@pytest.mark.parametrize("given", BAD_SERVERS)
def test_a_server_with_a_scheme_or_a_path_is_a_usage_error_saying_the_form(
    home: pathlib.Path, given: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    never = lambda server: pytest.fail("no RPC may be made")  # noqa: E731

    assert ctl.main(["--server", given, "stats"], connect=never) == 2
    assert "argument --server: expected HOST, HOST:PORT or [IPv6]:PORT (port 50051" in capsys.readouterr().err
    monkeypatch.setenv("MISSIONS_SERVER", given)
    assert ctl.main(["stats"], connect=never) == 2
    err = capsys.readouterr().err
    assert err.startswith("missionctl: error: argument --server: MISSIONS_SERVER: ") and repr(given) in err
    monkeypatch.delenv("MISSIONS_SERVER")
    write_config(home, f'server = "{given}"\n')
    with pytest.raises(ValueError, match=r"config file .*: server: "):
        settings(home)
