"""Failures that stop a process at start-up with one line, and binding a gRPC server alone to its port."""

from __future__ import annotations

import errno
import socket

import grpc

__all__ = ["EXCLUSIVE_PORT", "AddressInUseError", "ListenError", "StartupError", "add_port", "check_not_in_use"]

# grpcio sets SO_REUSEPORT by default, so a second process could bind the same port and
# take a share of its connections; with it off, the second bind fails.
EXCLUSIVE_PORT: tuple[str, int] = ("grpc.so_reuseport", 0)


class StartupError(Exception):
    """A process cannot start, for a reason its message gives in full (an address in use, a
    state directory held by another process): run_until_signalled logs it as one line, no traceback."""


class ListenError(StartupError):
    """A server cannot listen on its address; the message names the address and why."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot listen on {address}: {reason}")
        self.address = address
        self.reason = reason


class AddressInUseError(ListenError):
    """Another socket (another process, most often) already listens on the address."""

    def __init__(self, address: str) -> None:
        super().__init__(address, "address already in use")


def check_not_in_use(address: str) -> None:
    """Raise AddressInUseError if another socket already listens on ``address``: what a
    process checks before it touches the broker, so a second one on the same port stops at
    once, with one line."""
    if isinstance(error := _why_not(address), AddressInUseError):
        raise error


def add_port(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
    """Bind ``server`` (built with EXCLUSIVE_PORT) to ``address``; returns the port.

    Raises AddressInUseError when the port is taken, or ListenError for any other failure.
    """
    # Checked first: gRPC's core would log a failed bind on a line of its own, beside ours.
    check_not_in_use(address)
    try:
        port: int = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError:  # how grpcio reports a failed bind; some versions return 0 instead
        port = 0
    if port == 0:
        raise _why_not(address)
    return port


def _why_not(address: str) -> ListenError:
    """Why a bind of ``address`` fails (or would). grpcio says only "Failed to bind" (its C
    core logs the errno), so bind a plain socket to the same address and report what the OS
    says; the unknown reason when that bind works."""
    unknown = ListenError(address, "the gRPC server failed to bind it")
    host, _, port = address.rpartition(":")
    if not port.isdigit():  # not HOST:PORT (a unix: address, say)
        return unknown
    try:
        found = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        return ListenError(address, f"cannot resolve {host!r}: {exc}")
    for family, kind, protocol, _, where in found:
        with socket.socket(family, kind, protocol) as probe:
            # grpcio sets SO_REUSEADDR too: a closed predecessor's TIME_WAIT is no conflict.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return AddressInUseError(address)
                return ListenError(address, (exc.strerror or str(exc)).lower())
    return unknown
