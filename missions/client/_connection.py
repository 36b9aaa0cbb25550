"""How a client reaches the service: TLS (server CA, client certificate) and the bearer token.

missionctl and ``missions.Client`` share it.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from missions.client._settings import ClientSettings
from missions.tls import TlsFiles

__all__ = ["Connection", "Metadata", "bearer"]

Metadata = Sequence[tuple[str, str]]

_FLAGS = ("--tls-ca", "--tls-cert", "--tls-key")


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach the service: a channel factory and the metadata every call carries.

    Attributes:
        tls: the TLS files; None for a plaintext channel.
        token: the bearer token ("" for none); never printed.
    """

    tls: TlsFiles | None = None
    token: str = field(default="", repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Connection:
        """From the global flags, else MISSIONS_* or the config file; ValueError names what is wrong."""
        return cls.from_settings(ClientSettings.from_args(args))

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> Connection:
        """Check the TLS files and read the token file now; ValueError names the option that is wrong."""
        files = TlsFiles(settings.tls_ca, settings.tls_cert, settings.tls_key, flags=_FLAGS)
        files.validate()
        tls = files if files.configured or settings.tls else None
        return cls(tls, settings.token or _read_token(settings.token_file))

    @property
    def metadata(self) -> Metadata:
        return bearer(self.token)

    def channel(self, target: str) -> grpc.Channel:
        """A synchronous channel; pass ``metadata`` with each call."""
        if self.tls is None:
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, self.tls.channel_credentials())

    def aio_channel(self, target: str, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()) -> grpc.aio.Channel:
        """The same for asyncio clients (grpc.aio), through ``interceptors``."""
        if self.tls is None:
            return grpc.aio.insecure_channel(target, interceptors=interceptors)
        return grpc.aio.secure_channel(target, self.tls.channel_credentials(), interceptors=interceptors)


def bearer(token: str) -> Metadata:
    """The call metadata that presents ``token`` to the service ("" → none)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def _read_token(path: pathlib.Path | None) -> str:
    if path is None:
        return ""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--token-file: cannot read {path}: {exc}") from exc
    if not token:
        raise ValueError(f"--token-file: {path} is empty")
    return token
