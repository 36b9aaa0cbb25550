"""TLS options: file checks, the amqps:// SSL context, the exposure check and missionctl's connection."""

from __future__ import annotations

import argparse
import pathlib
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aio_pika
import grpc
import grpc_testing
import pytest

from mission_service import cli as service_cli
from mission_service.settings import ServiceSettings, is_loopback
from missions import amqp
from missions import ctl as missionctl
from missions.client._connection import Connection
from missions.ctl.parser import build_parser
from missions.tls import TlsConfigError, TlsFiles
from missions.v1 import mission_service_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.e2e.secure_certs import Authority, Issued
from worker_service import cli as worker_cli


@pytest.fixture
def ca(tmp_path: pathlib.Path) -> Authority:
    return Authority("unit", tmp_path)


@pytest.fixture
def server(ca: Authority) -> Issued:
    return ca.issue("server", server=True)


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.9.9.9:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.0.0.5:50051", False),
        ("service.internal:50051", False),
    ],
)
def test_is_loopback(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_off_loopback_the_service_needs_tls_and_authentication(server: Issued, ca: Authority) -> None:
    tls = TlsFiles(cert=server.cert, key=server.key)
    mtls = TlsFiles(ca=ca.cert, cert=server.cert, key=server.key)
    tokens = pathlib.Path("tokens.toml")
    assert ServiceSettings(listen="127.0.0.1:1").exposure_problem() is None
    bare = ServiceSettings(listen="0.0.0.0:1").exposure_problem()
    assert bare is not None and "no TLS and no authentication" in bare and "--insecure" in bare
    assert "no authentication" in (ServiceSettings(listen="0.0.0.0:1", tls=tls).exposure_problem() or "")
    assert "no TLS" in (ServiceSettings(listen="0.0.0.0:1", tokens_file=tokens).exposure_problem() or "")
    assert ServiceSettings(listen="0.0.0.0:1", tls=tls, tokens_file=tokens).exposure_problem() is None
    assert ServiceSettings(listen="0.0.0.0:1", tls=mtls).exposure_problem() is None


def test_service_cli_refuses_an_exposed_plaintext_listen_unless_insecure(
    capsys: pytest.CaptureFixture[str], server: Issued, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(SystemExit):
        service_cli.parse(["--listen", "0.0.0.0:50051"])
    assert "not a loopback address" in capsys.readouterr().err
    settings, _ = service_cli.parse(["--listen", "0.0.0.0:50051", "--insecure"])
    assert settings.insecure and settings.tls is None
    tokens = tmp_path / "tokens.toml"
    tokens.write_text("[tokens]\n")
    tls = ["--tls-cert", str(server.cert), "--tls-key", str(server.key)]
    settings, _ = service_cli.parse(["--listen", "0.0.0.0:50051", *tls, "--tokens-file", str(tokens)])
    assert settings.tls == TlsFiles(cert=server.cert, key=server.key) and settings.tokens_file == tokens
    assert "tokens_file" in repr(settings)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "{ca}"], "--tls-client-ca needs --tls-cert and --tls-key"),
        (["--tls-cert", "{missing}", "--tls-key", "{key}"], "--tls-cert: cannot read"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "not a matching PEM certificate and key"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{key}"], "--tls-client-ca: not a PEM"),
        (["--tokens-file", "{missing}"], "--tokens-file: cannot read"),
        (["--max-watch-streams", "-1"], "argument --max-watch-streams: must be at least 0, got -1"),
    ],
)
def test_service_cli_names_the_bad_security_option(
    argv: list[str], message: str, server: Issued, ca: Authority, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "cert": server.cert,
        "key": server.key,
        "ca": ca.cert,
        "missing": ca.directory / "missing.pem",
        "other_key": ca.issue("other", server=False).key,
    }
    with pytest.raises(SystemExit):
        service_cli.parse([arg.format(**files) for arg in argv])
    assert message in capsys.readouterr().err


def test_amqp_tls_options_need_an_amqps_url(ca: Authority, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        worker_cli.parse(["--amqp-ca", str(ca.cert)])
    assert "need an amqps:// --amqp-url" in capsys.readouterr().err
    settings, _ = worker_cli.parse(["--amqp-url", "amqps://u:p@broker:5671/", "--amqp-ca", str(ca.cert)])
    assert settings.amqp_tls == TlsFiles(ca=ca.cert)
    assert "u:p@" not in repr(settings)


def test_client_context_verifies_the_broker_with_the_ca_and_presents_the_client_certificate(ca: Authority) -> None:
    client = ca.issue("worker", server=False)
    context = TlsFiles(ca=ca.cert, cert=client.cert, key=client.key).client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "unit test CA"),),)]
    system = TlsFiles().client_context()  # no CA given: the system's trust store
    assert system.verify_mode == ssl.CERT_REQUIRED


async def test_amqp_connect_passes_the_ssl_context_for_amqps(ca: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def connect_robust(url: str, **kwargs: Any) -> Any:
        seen.update(kwargs, url=url)
        return object()

    monkeypatch.setattr(aio_pika, "connect_robust", connect_robust)
    files = TlsFiles(ca=ca.cert, flags=("--amqp-ca", "--amqp-cert", "--amqp-key"))
    await amqp.connect("amqps://guest:pw@broker:5671/", "test", files)
    assert isinstance(seen["ssl_context"], ssl.SSLContext) and seen["url"].startswith("amqps://")
    await amqp.connect("amqp://guest:pw@broker:5672/", "test")
    assert seen["ssl_context"] is None
    with pytest.raises(ValueError, match="need an amqps:// URL") as failure:
        await amqp.connect("amqp://guest:pw@broker:5672/", "test", files)
    assert "pw" not in str(failure.value)


def _ctl_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args([*argv, "stats"])


def test_missionctl_connection_from_flags(
    ca: Authority, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MISSIONS_TOKEN", raising=False)
    assert Connection.from_args(_ctl_args()) == Connection()
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    connection = Connection.from_args(_ctl_args("--tls-ca", str(ca.cert), "--token-file", str(token_file)))
    assert connection.tls == TlsFiles(ca=ca.cert) and connection.metadata == (("authorization", "Bearer s3cret"),)
    assert "s3cret" not in repr(connection)
    assert Connection.from_args(_ctl_args("--tls")).tls == TlsFiles()
    token_file.write_text("\n")
    with pytest.raises(ValueError, match=r"--token-file: .* is empty"):
        Connection.from_args(_ctl_args("--token-file", str(token_file)))
    with pytest.raises(TlsConfigError, match="--tls-cert and --tls-key go together"):
        Connection.from_args(_ctl_args("--tls-cert", str(ca.cert)))


def test_missionctl_sends_the_token_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISSIONS_TOKEN", "from-env")
    service = mission_service_pb2.DESCRIPTOR.services_by_name["MissionService"]
    channel = grpc_testing.channel([service], grpc_testing.strict_real_time())
    with ThreadPoolExecutor(max_workers=1) as pool:
        done = pool.submit(missionctl.main, ["stats"], connect=lambda server: channel)
        metadata, _, rpc = channel.take_unary_unary(service.methods_by_name["GetStats"])
        rpc.terminate(pb.GetStatsResponse(), (), grpc.StatusCode.OK, "")
        assert done.result(timeout=10) == 0
    assert ("authorization", "Bearer from-env") in metadata


def test_missionctl_reports_a_bad_tls_option_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert missionctl.main(["--tls-ca", "/nonexistent/ca.pem", "stats"], connect=lambda s: pytest.fail("no RPC")) == 2
    assert "--tls-ca: cannot read /nonexistent/ca.pem" in capsys.readouterr().err
