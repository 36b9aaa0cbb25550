"""The tokens file (hashes, constant-time lookup, reloads), the method policy and bearer metadata."""

from __future__ import annotations

import hashlib
import hmac
import os
import pathlib
import time
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from mission_service.auth import AuthInterceptor, allowed_roles
from mission_service.cli import hash_token_main
from mission_service.quota import StreamQuota
from mission_service.tokens import Principal, Role, TokenFile, TokenFileError, TokenTable, hash_token

ALICE = "alice-secret-token"
RITA = "rita-secret-token"


def toml(*entries: tuple[str, str, list[str]]) -> str:
    return "\n".join(
        f'[tokens.{hash_token(token)}]\nprincipal = "{name}"\nroles = {roles!r}\n'.replace("'", '"')
        for token, name, roles in entries
    )


def test_hash_token_is_the_sha256_hex_digest_that_sha256sum_prints() -> None:
    assert hash_token("s3cret") == hashlib.sha256(b"s3cret").hexdigest()


def test_hash_token_command_reads_stdin_and_never_needs_the_token_in_argv(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", _Stdin("s3cret\n"))
    assert hash_token_main([]) == 0
    assert capsys.readouterr().out.strip() == hash_token("s3cret")
    assert hash_token_main(["--generate"]) == 0
    token, digest = capsys.readouterr().out.split()
    assert hash_token(token) == digest and len(token) >= 40


class _Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def isatty(self) -> bool:
        return False

    def read(self) -> str:
        return self.text


def test_toml_and_json_tables_map_hashes_to_principals_and_roles() -> None:
    table = TokenTable.parse(toml((ALICE, "alice", ["submitter"]), (RITA, "rita", ["reader", "submitter"])))
    assert table.lookup(ALICE) == Principal("alice", frozenset({Role.SUBMITTER}))
    assert table.lookup(RITA) == Principal("rita", frozenset({Role.READER, Role.SUBMITTER}))
    assert table.lookup("guess") is None
    assert table.lookup(hash_token(ALICE)) is None  # the stored hash is not a token
    as_json = f'{{"tokens": {{"{hash_token(ALICE)}": {{"principal": "alice", "roles": ["admin"]}}}}}}'
    assert TokenTable.parse(as_json, json_format=True).lookup(ALICE) == Principal("alice", frozenset({Role.ADMIN}))


def test_lookup_compares_every_entry_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    table = TokenTable.parse(toml((ALICE, "alice", ["submitter"]), (RITA, "rita", ["reader"])))
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def compare_digest(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)
    assert table.lookup(ALICE) is not None
    assert len(compared) == 2  # no early exit on the first match
    assert table.lookup("guess") is None and len(compared) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens = [", "not valid TOML"),
        ("[other]\nx = 1", "expected a 'tokens' table"),
        ('[tokens.abc]\nprincipal = "a"\nroles = ["admin"]', "SHA-256 digest in lowercase hex"),
        (f'[tokens.{"A" * 64}]\nprincipal = "a"\nroles = ["admin"]', "SHA-256 digest in lowercase hex"),
        (f'[tokens.{"a" * 64}]\nroles = ["admin"]', ".principal: must be a string"),
        (f'[tokens.{"a" * 64}]\nprincipal = "a"\nroles = ["root"]', ".roles: must be a non-empty list of admin"),
        (f'[tokens.{"a" * 64}]\nprincipal = "a"\nroles = []', ".roles: must be a non-empty list"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_entry(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message.replace(".", r"\.").replace("[", r"\[")):
        TokenTable.parse(text)


def _touch_later(path: pathlib.Path, text: str) -> None:
    """Rewrite ``path`` with an mtime that differs even on coarse file-system clocks."""
    path.write_text(text)
    later = time.time_ns() + 2_000_000_000
    os.utime(path, ns=(later, later))


def test_reload_replaces_the_table_and_a_bad_file_keeps_the_old_one(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(toml((ALICE, "alice", ["submitter"])))
    tokens_file = TokenFile(path)
    path.write_text(toml((RITA, "rita", ["reader"])))
    assert tokens_file.reload()
    assert tokens_file.lookup(RITA) is not None and tokens_file.lookup(ALICE) is None

    path.write_text("not = [toml")
    assert not tokens_file.reload()
    assert tokens_file.lookup(RITA) is not None
    assert "not reloaded, keeping the previous 1 tokens" in caplog.text
    path.unlink()
    assert not tokens_file.reload()
    assert tokens_file.lookup(RITA) is not None
    assert RITA not in caplog.text


def test_a_changed_file_is_noticed_on_use_at_most_once_a_second(tmp_path: pathlib.Path) -> None:
    clock = [1000.0]
    path = tmp_path / "tokens.toml"
    path.write_text(toml((ALICE, "alice", ["submitter"])))
    tokens_file = TokenFile(path, clock=lambda: clock[0])
    _touch_later(path, toml((RITA, "rita", ["reader"])))
    assert tokens_file.lookup(RITA) is None  # checked less than a second ago
    clock[0] += 1.0
    assert tokens_file.lookup(RITA) is not None


def test_a_bad_file_at_start_up_is_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TokenFileError, match="cannot read"):
        TokenFile(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("method", "roles"),
    [
        ("/grpc.health.v1.Health/Check", None),
        ("/grpc.health.v1.Health/Watch", None),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {"reader", "submitter", "admin"}),
        ("/missions.v1.MissionService/GetMission", {"reader", "submitter", "admin"}),
        ("/missions.v1.MissionService/WatchEvents", {"reader", "submitter", "admin"}),
        ("/missions.v1.MissionService/SubmitMission", {"submitter", "admin"}),
        ("/missions.v1.MissionService/CancelMission", {"submitter", "admin"}),
        ("/missions.v1.MissionService/GetStats", {"reader", "admin"}),
        ("/missions.v1.MissionService/RedriveMission", {"admin"}),
        ("/missions.v1.MissionService/SomethingNew", {"admin"}),
        ("/other.Service/Method", {"admin"}),
    ],
)
def test_method_policy(method: str, roles: set[str] | None) -> None:
    allowed = allowed_roles(method)
    assert (None if allowed is None else {role.value for role in allowed}) == roles


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details


class _Context:
    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any = ()) -> None:
        raise _Aborted(code, details)


async def _refusal(tmp_path: pathlib.Path, metadata: Any) -> _Aborted | None:
    """How AuthInterceptor answers a SubmitMission with ``metadata`` when only ALICE (a
    submitter) has a token: the abort of the handler it substitutes, or None if it lets the call through."""
    path = tmp_path / "tokens.toml"
    path.write_text(toml((ALICE, "alice", ["submitter"])))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: None)

    async def continuation(details: Any) -> grpc.RpcMethodHandler:
        return handler

    details = SimpleNamespace(method="/missions.v1.MissionService/SubmitMission", invocation_metadata=metadata)
    chosen = await AuthInterceptor(TokenFile(path)).intercept_service(continuation, details)
    if chosen is handler:
        return None
    with pytest.raises(_Aborted) as aborted:
        await chosen.unary_unary(None, _Context())
    return aborted.value


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ((), "missing 'authorization: Bearer <token>'"),
        ((("authorization", f"Bearer {ALICE}"), ("authorization", f"Bearer {ALICE}")), "more than one"),
        ((("authorization", "Basic dXNlcjpwdw=="),), "must be 'Bearer <token>'"),
        ((("authorization", "Bearer "),), "must be 'Bearer <token>'"),
        ((("authorization", "Bearer " + "x" * 4097),), "1 to 4096 characters"),
    ],
)
async def test_bearer_metadata_must_hold_exactly_one_token(tmp_path: pathlib.Path, metadata: Any, problem: str) -> None:
    refusal = await _refusal(tmp_path, metadata)
    assert refusal is not None and refusal.code == grpc.StatusCode.UNAUTHENTICATED
    assert problem in refusal.details
    assert "x" * 20 not in refusal.details  # never echoes the token


async def test_bearer_scheme_is_case_insensitive(tmp_path: pathlib.Path) -> None:
    assert await _refusal(tmp_path, (("authorization", f"bearer {ALICE}"),)) is None


def test_stream_quota_counts_per_principal() -> None:
    quota = StreamQuota(2)
    assert quota.acquire("alice") and quota.acquire("alice")
    assert not quota.acquire("alice")
    assert quota.acquire("bob")
    quota.release("alice")
    assert quota.open("alice") == 1 and quota.acquire("alice")
    unlimited = StreamQuota(0)
    assert all(unlimited.acquire("alice") for _ in range(1000))
