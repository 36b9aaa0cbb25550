"""gRPC health status derived from named conditions (connections up, streams followed, ...)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aio_pika.abc import AbstractRobustConnection
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from missions.startup import EXCLUSIVE_PORT, add_port

__all__ = ["HealthConditions", "serving_health"]

log = logging.getLogger(__name__)


class HealthConditions:
    """SERVING (for "" and ``service``) only while every named condition holds."""

    def __init__(self, service: str, *conditions: str) -> None:
        self.servicer = health.aio.HealthServicer()
        self._service = service
        self._failing = set(conditions)

    @property
    def failing(self) -> frozenset[str]:
        return frozenset(self._failing)

    async def set(self, condition: str, ok: bool) -> None:
        (self._failing.discard if ok else self._failing.add)(condition)
        serving = health_pb2.HealthCheckResponse.SERVING
        status = serving if not self._failing else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", self._service):
            await self.servicer.set(name, status)

    async def track(self, connection: AbstractRobustConnection, condition: str) -> None:
        """Follow a robust connection's losses and recoveries."""

        async def on_close(*_: Any) -> None:
            if connection.close_called:  # our own shutdown, not a loss
                log.info("%s closed", condition)
            else:
                log.warning("%s lost; reconnecting", condition)
            await self.set(condition, False)

        async def on_reconnect(*_: Any) -> None:
            log.info("%s restored", condition)
            await self.set(condition, True)

        connection.close_callbacks.add(on_close)
        connection.reconnect_callbacks.add(on_reconnect)
        await self.set(condition, True)


@contextlib.asynccontextmanager
async def serving_health(listen: str, conditions: HealthConditions) -> AsyncIterator[int]:
    """A gRPC server of nothing but ``conditions``' health service on ``listen`` until exit
    (a process without a gRPC server of its own: the worker); yields its port."""
    server = grpc.aio.server(options=[EXCLUSIVE_PORT])
    health_pb2_grpc.add_HealthServicer_to_server(conditions.servicer, server)
    port = add_port(server, listen)
    await server.start()
    log.info("health service on %s", listen)
    try:
        yield port
    finally:
        await server.stop(1)
