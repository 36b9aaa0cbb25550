"""A Stack whose mission-service serves TLS (optionally mTLS) and checks bearer tokens."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from mission_service.tokens import hash_token
from missions.client._connection import Connection, bearer
from missions.tls import TlsFiles
from missions.v1 import mission_service_pb2_grpc
from tests.e2e.secure_certs import Authority, Issued
from tests.support import Process, Stack, wait_serving_on

__all__ = ["PRINCIPALS", "SecureStack"]

# The principals of every secure stack's tokens file, and their roles.
PRINCIPALS: Mapping[str, Sequence[str]] = {
    "alice": ["submitter"],
    "bob": ["submitter"],
    "rita": ["reader"],
    "ada": ["admin"],
}


def tokens_toml(tokens: Mapping[str, str], roles: Mapping[str, Sequence[str]]) -> str:
    """A tokens file granting each principal (token by principal) its roles."""
    lines = []
    for principal, token in tokens.items():
        listed = ", ".join(f'"{role}"' for role in roles[principal])
        lines += [f"[tokens.{hash_token(token)}]", f'principal = "{principal}"', f"roles = [{listed}]", ""]
    return "\n".join(lines)


@dataclass
class SecureStack(Stack):
    """Its own CA and server certificate, a token per principal, and TLS channels closed with it."""

    tokens: dict[str, str] = field(default_factory=lambda: {name: secrets.token_urlsafe(24) for name in PRINCIPALS})
    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ca = Authority("main", self.directory)
        self.server_cert = self.ca.issue("server", server=True)
        self.tokens_file = self.directory / "tokens.toml"
        self.write_tokens(self.tokens)

    def write_tokens(self, tokens: Mapping[str, str], roles: Mapping[str, Sequence[str]] = PRINCIPALS) -> None:
        self.tokens_file.write_text(tokens_toml(tokens, roles))

    def service_args(self, *, mtls: bool = False, tokens: bool = True) -> list[str]:
        args = ["--tls-cert", str(self.server_cert.cert), "--tls-key", str(self.server_cert.key)]
        if mtls:
            args += ["--tls-client-ca", str(self.ca.cert)]
        if tokens:
            args += ["--tokens-file", str(self.tokens_file)]
        return args

    async def start_service(self, *args: str) -> Process:
        """The service with ``args`` (see ``service_args``), once its health check says SERVING over TLS."""
        self.service = Process(["mission_service", *args], self.env(), self.directory / "service.log").start()
        client = self.ca.issue("health-probe", server=False) if "--tls-client-ca" in args else None
        await wait_serving_on(self.channel(client=client), self.service)
        return self.service

    def channel(self, *, client: Issued | None = None, plaintext: bool = False) -> grpc.aio.Channel:
        """A channel that trusts the stack's CA and presents ``client`` if given (the Python client helper)."""
        files = TlsFiles(self.ca.cert, client.cert if client else None, client.key if client else None)
        channel = Connection(None if plaintext else files).aio_channel(self.target)
        self._channels.append(channel)
        return channel

    def stub_for(self, channel: grpc.aio.Channel | None = None) -> mission_service_pb2_grpc.MissionServiceStub:
        return mission_service_pb2_grpc.MissionServiceStub(channel or self.channel())

    def auth(self, principal: str) -> tuple[tuple[str, str], ...]:
        """The call metadata of ``principal``'s token."""
        return tuple(bearer(self.tokens[principal]))

    def log(self) -> str:
        assert self.service is not None
        return self.service.output()

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels))
        await super().close()
