"""Worker heartbeats: a missions.v1.Worker message on the workers exchange every interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

import aio_pika
from aio_pika.abc import AbstractConnection
from google.protobuf import timestamp_pb2

from missions.amqp import broker_call, close_channel
from missions.errors import BrokerUnavailableError
from missions.events import duration, now
from missions.topology import Topology
from missions.v1 import worker_pb2
from worker_service.consumer import MissionConsumer
from worker_service.settings import WorkerSettings

__all__ = ["HEARTBEAT_TYPE", "Heartbeat"]

log = logging.getLogger(__name__)

HEARTBEAT_TYPE = "missions.v1.Worker"


class Heartbeat:
    """Announces this worker until stopped, then once more as STOPPING."""

    def __init__(
        self,
        settings: WorkerSettings,
        consumer: MissionConsumer,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._started = now()
        # Set after the first heartbeat: the service should know a session before its first STARTED.
        self.announced = asyncio.Event()

    def snapshot(self, state: worker_pb2.WorkerState.ValueType) -> worker_pb2.Worker:
        worker = worker_pb2.Worker(
            id=self._settings.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            handler_types=sorted(self._consumer.mission_types),
            concurrency=self._settings.concurrency,
            running=self._consumer.running,
            start_time=self._started,
            heartbeat_time=now(),
            heartbeat_interval=duration(self._settings.heartbeat_interval),
            state=state,
            finished=self._consumer.attempts.finished,
            session=self._consumer.attempts.session,
        )
        if self._consumer.last_delivery_time is not None:
            delivered = timestamp_pb2.Timestamp()
            delivered.FromNanoseconds(int(self._consumer.last_delivery_time * 1e9))
            worker.last_delivery_time.CopyFrom(delivered)
        return worker

    async def run(self, connection: AbstractConnection, stop: asyncio.Event, done: asyncio.Event) -> None:
        """Announce ACTIVE until ``stop``, then STOPPING (while draining) until ``done``."""
        channel = await connection.channel()
        try:
            exchange = await channel.get_exchange(Topology(self._settings.namespace).workers_exchange)
            interval = self._settings.heartbeat_interval.total_seconds()
            while not done.is_set():
                stopping = stop.is_set()
                await self._send(
                    exchange, worker_pb2.WORKER_STATE_STOPPING if stopping else worker_pb2.WORKER_STATE_ACTIVE
                )
                self.announced.set()
                # ``stop`` wakes us early to announce STOPPING at once; ``done`` comes after it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for((done if stopping else stop).wait(), interval)
        finally:
            await close_channel(channel)

    async def _send(self, exchange: aio_pika.abc.AbstractExchange, state: worker_pb2.WorkerState.ValueType) -> None:
        message = aio_pika.Message(
            self.snapshot(state).SerializeToString(),
            type=HEARTBEAT_TYPE,
            # Long enough that a busy service still reads it; a stale one only refreshes
            # what a newer heartbeat already said.
            expiration=self._settings.heartbeat_interval.total_seconds() * 20,
        )
        try:
            with broker_call("heartbeat not sent"):
                await exchange.publish(message, routing_key="")
        except BrokerUnavailableError as exc:
            log.debug("%s", exc)
