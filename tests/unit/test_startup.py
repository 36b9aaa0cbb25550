"""A port in use is one AddressInUseError, found before gRPC's core tries it and logs a line of its own."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import pytest

from missions.startup import EXCLUSIVE_PORT, AddressInUseError, add_port, check_not_in_use
from tests.support import free_port


@pytest.fixture
def taken() -> Iterator[str]:
    """An address another socket listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_an_address_in_use_is_found_before_binding(taken: str) -> None:
    with pytest.raises(AddressInUseError, match=f"cannot listen on {taken}: address already in use"):
        check_not_in_use(taken)
    check_not_in_use(f"127.0.0.1:{free_port()}")


async def test_add_port_on_an_address_in_use_raises_without_a_line_from_grpcs_core(
    taken: str, capfd: pytest.CaptureFixture[str]
) -> None:
    server = grpc.aio.server(options=[EXCLUSIVE_PORT])
    with pytest.raises(AddressInUseError):
        add_port(server, taken)
    assert capfd.readouterr().err == ""
    assert add_port(server, "127.0.0.1:0") > 0  # a free address still binds
    await server.stop(None)
