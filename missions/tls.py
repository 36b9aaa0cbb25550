"""TLS material read from PEM files: gRPC server and channel credentials, and amqps:// contexts."""

from __future__ import annotations

import pathlib
import ssl
from dataclasses import dataclass, field

import grpc

__all__ = ["TlsConfigError", "TlsFiles"]


class TlsConfigError(ValueError):
    """A TLS option names a file that is missing, unreadable or not valid PEM; the message names the option."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The PEM files of one side of a TLS connection.

    Attributes:
        ca: CA bundle that verifies the peer. A client without one trusts the system's CAs;
            a server with one requires clients to present a certificate signed by it (mTLS).
        cert: our certificate chain (a server's is required; a client's is for mTLS).
        key: the private key of ``cert``.
        flags: the command-line options the three come from, named in error messages.
    """

    ca: pathlib.Path | None = None
    cert: pathlib.Path | None = None
    key: pathlib.Path | None = None
    flags: tuple[str, str, str] = field(default=("--tls-ca", "--tls-cert", "--tls-key"), compare=False)

    @property
    def configured(self) -> bool:
        return any((self.ca, self.cert, self.key))

    def validate(self, *, server: bool = False) -> None:
        """Fail now, naming the option, rather than at the first handshake."""
        ca_flag, cert_flag, key_flag = self.flags
        if (self.cert is None) != (self.key is None):
            raise TlsConfigError(f"{cert_flag} and {key_flag} go together")
        if server and self.cert is None:
            raise TlsConfigError(f"{ca_flag} needs {cert_flag} and {key_flag}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self.cert is not None and self.key is not None:
            self._read(self.cert, cert_flag)
            self._read(self.key, key_flag)
            try:
                context.load_cert_chain(self.cert, self.key)
            except ssl.SSLError as exc:
                raise TlsConfigError(f"{cert_flag}/{key_flag}: not a matching PEM certificate and key ({exc})") from exc
        if self.ca is not None:
            self._read(self.ca, ca_flag)
            try:
                context.load_verify_locations(cafile=self.ca)
            except ssl.SSLError as exc:
                raise TlsConfigError(f"{ca_flag}: not a PEM CA bundle ({exc})") from exc

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server TLS; with ``ca``, clients must present a certificate signed by it."""
        ca_flag, cert_flag, key_flag = self.flags
        if self.cert is None or self.key is None:
            raise TlsConfigError(f"server TLS needs {cert_flag} and {key_flag}")
        pair = (self._read(self.key, key_flag), self._read(self.cert, cert_flag))
        roots = self._read(self.ca, ca_flag) if self.ca is not None else None
        credentials: grpc.ServerCredentials = grpc.ssl_server_credentials(
            [pair], root_certificates=roots, require_client_auth=roots is not None
        )
        return credentials

    def server_context(self) -> ssl.SSLContext:
        """``server_credentials`` as an SSL context, for a server on asyncio (the HTTP API)."""
        _, cert_flag, key_flag = self.flags
        if self.cert is None or self.key is None:
            raise TlsConfigError(f"server TLS needs {cert_flag} and {key_flag}")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        if self.ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client TLS: verify the server with ``ca`` (else the system's CAs), present ``cert`` if given."""
        ca_flag, cert_flag, key_flag = self.flags
        roots = self._read(self.ca, ca_flag) if self.ca is not None else None
        key = self._read(self.key, key_flag) if self.key is not None else None
        chain = self._read(self.cert, cert_flag) if self.cert is not None else None
        credentials: grpc.ChannelCredentials = grpc.ssl_channel_credentials(roots, key, chain)
        return credentials

    def client_context(self) -> ssl.SSLContext:
        """An SSL context for a TLS client (amqps://): hostname checked, peer verified by ``ca``."""
        context = ssl.create_default_context(cafile=self.ca)
        if self.cert is not None:
            context.load_cert_chain(self.cert, self.key)
        return context

    @staticmethod
    def _read(path: pathlib.Path, flag: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TlsConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from exc
