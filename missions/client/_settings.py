"""Client settings: the argument (or flag), else ``MISSIONS_*``, else the config file, else the default.

One module for ``missions.Client``, ``missions.AsyncClient`` and missionctl. The config file is
TOML: ``$XDG_CONFIG_HOME/missions/missionctl.toml`` (``~/.config/...`` without XDG_CONFIG_HOME),
or ``--config``/``MISSIONS_CONFIG``. Its keys are the long flag names without ``--``; a
``[profiles.NAME]`` table overrides them when ``--profile NAME`` (or ``MISSIONS_PROFILE``) picks
it. A file that holds a token must be private (mode 600).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from missions.metadata import DEFAULT_ADDRESS
from missions.options import Choice, Option, boolean, seconds

__all__ = [
    "COLORS",
    "CONFIG_VARIABLE",
    "DEFAULT_TIMEOUT_S",
    "OPTIONS",
    "OUTPUTS",
    "PROFILE_VARIABLE",
    "ClientSettings",
    "NotGiven",
    "config_path",
    "positive_seconds",
    "server_address",
]

DEFAULT_TIMEOUT_S = 10.0
CONFIG_VARIABLE = "MISSIONS_CONFIG"
PROFILE_VARIABLE = "MISSIONS_PROFILE"
OUTPUTS = ("text", "json", "jsonl")
COLORS = ("auto", "always", "never")
_PROFILES = "profiles"


class NotGiven(str):
    """A global option's default as the parser holds it (its variable, else its default), so that
    --help and docs/configuration.md show it; ``ClientSettings.from_args`` takes it for an absent
    flag and looks further."""

    __slots__ = ()


def positive_seconds(text: str) -> float:
    """A positive, finite number of seconds, as gRPC deadlines take them; ValueError otherwise."""
    return _positive_duration(text).total_seconds()


_positive_duration = seconds(positive=True)

_DEFAULT_PORT = DEFAULT_ADDRESS.rpartition(":")[2]
_SERVER_FORM = f"HOST, HOST:PORT or [IPv6]:PORT (port {_DEFAULT_PORT} when none is given; TLS is --tls, not a scheme)"


def server_address(text: str) -> str:
    """--server: ``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` as gRPC dials it, the default port added
    when there is none (without it gRPC would dial 443); ValueError says what form is expected."""
    if "://" in text or "/" in text:
        raise ValueError(f"expected {_SERVER_FORM}, got {text!r}")
    if text.startswith("["):
        host, bracket, rest = text.partition("]")
        host += bracket
        if not bracket or len(host) == 2 or (rest and not rest.startswith(":")):
            raise ValueError(f"expected {_SERVER_FORM}, got {text!r}")
        port = rest.removeprefix(":") if rest else _DEFAULT_PORT
    elif text.count(":") > 1:
        raise ValueError(f"expected {_SERVER_FORM}, got {text!r}: an IPv6 address goes in brackets")
    else:
        host, colon, port = text.partition(":")
        port = port if colon else _DEFAULT_PORT
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected {_SERVER_FORM}, got {text!r}")
    return f"{host}:{port}"


OPTIONS = (
    Option(
        "--server",
        "MISSIONS_SERVER",
        f"mission-service address, HOST[:PORT] (port {_DEFAULT_PORT} if none) or [IPv6]:PORT; no scheme",
        server_address,
        default=DEFAULT_ADDRESS,
        metavar="HOST:PORT",
    ),
    Option(
        "--output",
        "MISSIONS_OUTPUT",
        "text for people, json or jsonl for scripts",
        Choice(*OUTPUTS),
        default=OUTPUTS[0],
        short="-o",
    ),
    Option(
        "--color",
        "MISSIONS_COLOR",
        "colour and styles; auto: on a terminal without NO_COLOR",
        Choice(*COLORS),
        default=COLORS[0],
    ),
    Option(
        "--timeout",
        "MISSIONS_TIMEOUT",
        "deadline of each unary RPC",
        positive_seconds,
        default=f"{DEFAULT_TIMEOUT_S:g}",
        metavar="SECONDS",
    ),
    Option("--tls", "MISSIONS_TLS", "connect with TLS, verifying the server with the system's CAs", boolean),
    Option(
        "--tls-ca",
        "MISSIONS_TLS_CA",
        "connect with TLS, verifying the server with this CA bundle",
        pathlib.Path,
        metavar="PATH",
    ),
    Option(
        "--tls-cert",
        "MISSIONS_CLIENT_CERT",
        "client certificate for a service that requires mTLS",
        pathlib.Path,
        metavar="PATH",
    ),
    Option("--tls-key", "MISSIONS_CLIENT_KEY", "private key of --tls-cert", pathlib.Path, metavar="PATH"),
    Option("--token-file", "MISSIONS_TOKEN_FILE", "read the bearer token from this file", pathlib.Path, metavar="PATH"),
    Option(
        "--token",
        "MISSIONS_TOKEN",
        "bearer token (visible to other local users in the process list: prefer MISSIONS_TOKEN, --token-file or"
        " the config file)",
        metavar="TOKEN",
    ),
)
_BY_NAME = {option.name: option for option in OPTIONS}
# The TOML type of a config value, where it is not a string.
_KINDS: dict[str, type] = {"timeout": float, "tls": bool}


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Resolved client options (argument or flag > MISSIONS_* > config file > default).

    ``output`` and ``color`` are missionctl's; the Python clients ignore them.

    Attributes:
        server: mission-service address, HOST:PORT (``server_address`` adds a missing port). Default
            127.0.0.1:50051.
        output: text (rich, for people), json (one document per response) or jsonl (one item per line).
        color: auto (colour on a terminal unless NO_COLOR is set), always or never.
        timeout: deadline of each unary RPC in seconds. Default 10.
        tls: connect with TLS even without --tls-ca (the system's CAs verify the server).
        tls_ca, tls_cert, tls_key: TLS files; a CA means TLS, cert and key mean mTLS.
        token_file: file holding the bearer token.
        token: the bearer token; never printed.
    """

    server: str = DEFAULT_ADDRESS
    output: str = "text"
    color: str = "auto"
    timeout: float = DEFAULT_TIMEOUT_S
    tls: bool = False
    tls_ca: pathlib.Path | None = None
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    token_file: pathlib.Path | None = None
    token: str = field(default="", repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ClientSettings:
        """Resolve the global options of ``args`` (None or a NotGiven default where no flag was given).

        Raises:
            ValueError: a variable or config value is invalid, or the config file is missing
                (when named), unreadable, malformed, or holds a token other users can read.
        """
        given = {option.dest: _flag(args, option.dest) for option in OPTIONS}
        return cls.resolve(given, config=_flag(args, "config"), profile=_flag(args, "profile"), environ=environ)

    @classmethod
    def resolve(
        cls,
        given: Mapping[str, Any],
        *,
        config: str | os.PathLike[str] | None = None,
        profile: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientSettings:
        """Resolve every option: ``given[field]`` where not None, else its variable, else the config file.

        Args:
            given: values by field name (``server``, ``tls_ca``, ...); None means "not given".
            config: the config file; default ``MISSIONS_CONFIG``, else the usual path.
            profile: the config file's profile; default ``MISSIONS_PROFILE``.
            environ: the variables to read; default ``os.environ``.

        Raises:
            ValueError: as ``from_args``.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        file_values = _load_config(config, profile, environ)
        for option in OPTIONS:
            if given.get(option.dest) is not None:
                values[option.dest] = given[option.dest]
            elif (text := option.from_environment(environ)) is not None:
                values[option.dest] = option.parse(text, f"argument {option.flag}: {option.variable}")
            elif option.name in file_values:
                values[option.dest] = file_values[option.name]
        return cls(**values)


def _flag(args: argparse.Namespace, dest: str) -> Any:
    """The value of a flag the command line gave; None for an absent one."""
    value = getattr(args, dest, None)
    return None if isinstance(value, NotGiven) else value


def config_path(environ: Mapping[str, str]) -> pathlib.Path:
    """Where the config file is by default: under $XDG_CONFIG_HOME, else ~/.config."""
    base = environ.get("XDG_CONFIG_HOME") or str(pathlib.Path(environ.get("HOME") or pathlib.Path.home()) / ".config")
    return pathlib.Path(base) / "missions" / "missionctl.toml"


def _load_config(
    named: str | os.PathLike[str] | None, profile: str | None, environ: Mapping[str, str]
) -> dict[str, Any]:
    """The config values that apply (top level, then the profile's), parsed; {} without a file."""
    named = named or environ.get(CONFIG_VARIABLE)
    profile = profile or environ.get(PROFILE_VARIABLE)
    path = pathlib.Path(named).expanduser() if named else config_path(environ)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
            mode = os.fstat(file.fileno()).st_mode
    except FileNotFoundError:
        if named or profile:
            raise ValueError(f"config file {path} does not exist") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"config file {path}: {exc}") from None
    profiles = document.pop(_PROFILES, {})
    if not isinstance(profiles, dict) or not all(isinstance(table, dict) for table in profiles.values()):
        raise ValueError(f"config file {path}: [{_PROFILES}.NAME] must be tables")
    if any("token" in table for table in (document, *profiles.values())) and mode & 0o077:
        # Like ssh and ~/.pgpass: a secret in a file others can read is refused, not used.
        raise ValueError(f"config file {path} holds a token but other users can access it: chmod 600 {path}")
    values = _config_values(path, "", document)
    if profile:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ValueError(f"config file {path} has no profile {profile!r} (profiles: {known})")
        values |= _config_values(path, f"[{_PROFILES}.{profile}] ", profiles[profile])
    return values


def _config_values(path: pathlib.Path, where: str, table: dict[str, Any]) -> dict[str, Any]:
    return {key: _config_value(path, where, key, value) for key, value in table.items()}


def _has_kind(kind: type, value: object) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _config_value(path: pathlib.Path, where: str, key: str, value: object) -> Any:
    option = _BY_NAME.get(key)
    if option is None:
        raise ValueError(f"config file {path}: {where}unknown key {key!r} (known: {', '.join(_BY_NAME)})")
    kind = _KINDS.get(key, str)
    if not _has_kind(kind, value):
        wanted = {str: "a string", float: "a number", bool: "true or false"}[kind]
        raise ValueError(f"config file {path}: {where}{key} must be {wanted}, got {value!r}")
    if kind is bool:
        return value
    parsed = option.parse(str(value), f"config file {path}: {where}{key}")
    if option.type is pathlib.Path:
        # ~ works as in a shell, and a relative path is relative to the file, not to the cwd.
        return path.parent / parsed.expanduser()
    return parsed
