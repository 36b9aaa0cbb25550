"""Bearer tokens: the file that maps SHA-256 hashes of tokens to principals and roles.

The file holds hashes, never tokens, so reading it (or a backup of it) grants nothing.
TOML, or JSON when the name ends in ``.json``, with the same shape::

    [tokens.9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08]
    principal = "ci-pipeline"
    roles = ["submitter"]
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import json
import logging
import os
import pathlib
import re
import signal
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Principal", "Role", "TokenFile", "TokenFileError", "TokenTable", "hash_token", "reloaded_on_sighup"]

log = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MAX_PRINCIPAL = 128
# How often a lookup may stat the file to notice an edit.
_CHECK_INTERVAL_S = 1.0


class Role(enum.StrEnum):
    """What a principal may do (see docs/security.md)."""

    READER = "reader"  # read missions, events, workers, stats and dead letters
    SUBMITTER = "submitter"  # read, submit, and cancel its own missions
    ADMIN = "admin"  # everything, including redrive and cancelling anyone's missions


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's principal, or (``authenticated`` false) a peer address with every role."""

    name: str
    roles: frozenset[Role]
    authenticated: bool = True

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles


class TokenFileError(ValueError):
    """The tokens file cannot be read or does not have the documented shape."""


def hash_token(token: str) -> str:
    """The SHA-256 hex digest the tokens file stores for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    """Principals by token hash, looked up in constant time."""

    def __init__(self, entries: Mapping[str, Principal]) -> None:
        self._entries = [(bytes.fromhex(digest), principal) for digest, principal in entries.items()]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str) -> Principal | None:
        """The principal of ``token``, or None.

        Every entry is compared, with ``hmac.compare_digest``, so the time taken says
        nothing about how close a guess came.
        """
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for candidate, principal in self._entries:
            if hmac.compare_digest(digest, candidate):
                found = principal
        return found

    @classmethod
    def parse(cls, text: str, *, json_format: bool = False) -> TokenTable:
        try:
            document = json.loads(text) if json_format else tomllib.loads(text)
        except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError both are
            raise TokenFileError(f"not valid {'JSON' if json_format else 'TOML'}: {exc}") from exc
        tokens = document.get("tokens") if isinstance(document, dict) else None
        if not isinstance(tokens, dict):
            raise TokenFileError("expected a 'tokens' table of SHA-256 hex digest -> {principal, roles}")
        return cls({digest: _principal(digest, entry) for digest, entry in tokens.items()})

    @classmethod
    def load(cls, path: pathlib.Path) -> TokenTable:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"cannot read {path}: {exc}") from exc
        return cls.parse(text, json_format=path.suffix == ".json")


def _principal(digest: str, entry: Any) -> Principal:
    where = f"tokens.{digest[:12]}"
    if not _SHA256_HEX.fullmatch(digest):
        raise TokenFileError(f"{where}: the key must be a token's SHA-256 digest in lowercase hex (64 characters)")
    if not isinstance(entry, dict):
        raise TokenFileError(f"{where}: expected a table with 'principal' and 'roles'")
    name, roles = entry.get("principal"), entry.get("roles")
    if not isinstance(name, str) or not 0 < len(name) <= _MAX_PRINCIPAL:
        raise TokenFileError(f"{where}.principal: must be a string of 1 to {_MAX_PRINCIPAL} characters")
    known = {role.value for role in Role}
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and r in known for r in roles):
        raise TokenFileError(f"{where}.roles: must be a non-empty list of {', '.join(sorted(known))}")
    return Principal(name, frozenset(Role(role) for role in roles))


class TokenFile:
    """A TokenTable kept in step with its file: reloaded on ``reload()`` (SIGHUP) and on change.

    A lookup notices an edit within a second (it compares the file's stat at most once a
    second). A reload that fails keeps the table in force and logs why.
    """

    def __init__(self, path: pathlib.Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._signature = self._stat()
        self._table = TokenTable.load(path)  # a bad file at start-up is fatal
        self._checked = clock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def reload(self) -> bool:
        """Read the file again; on error keep the current table. Returns whether it was replaced."""
        self._signature = self._stat()
        self._checked = self._clock()
        try:
            table = TokenTable.load(self.path)
        except TokenFileError as exc:
            log.error(
                "tokens file %s not reloaded, keeping the previous %d tokens: %s", self.path, len(self._table), exc
            )
            return False
        self._table = table
        log.info("tokens file %s loaded: %d tokens", self.path, len(table))
        return True

    def lookup(self, token: str) -> Principal | None:
        if self._clock() - self._checked >= _CHECK_INTERVAL_S:
            self._checked = self._clock()
            if self._stat() != self._signature:
                self.reload()
        return self._table.lookup(token)


@contextlib.contextmanager
def reloaded_on_sighup(path: pathlib.Path | None) -> Iterator[TokenFile | None]:
    """The TokenFile of ``path`` (None: authentication off), reloaded on SIGHUP while the block runs:
    one for the process, which its gRPC and HTTP servers share (a signal has one handler)."""
    if path is None:
        yield None
        return
    tokens = TokenFile(path)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, tokens.reload)
    try:
        yield tokens
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
