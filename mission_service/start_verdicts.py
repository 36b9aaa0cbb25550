"""The service's answers to the workers' STARTED events: which worker runs each attempt.

A worker runs an attempt only once the log says its STARTED came first (copies of one
work message, taken by two workers in the same instant, must not both run). Every
replica's follower reads every STARTED anyway, so it answers: after each batch it
applies, one StartVerdicts message per worker session whose STARTED events the batch
held, to that session's queue. The worker takes the first answer; the others (one per
replica) find nothing waiting. So the broker's work per mission does not grow with the
number of workers, as it did while every worker read every STARTED itself.

Answers are transient and unconfirmed: one that is lost (a broker restart, a session
queue gone) costs the worker a question again (worker_service/verdicts.py), never a run.
"""

from __future__ import annotations

import logging

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from missions.amqp import broker_call
from missions.errors import BrokerUnavailableError
from missions.topology import Topology
from missions.v1 import events_pb2, worker_pb2

__all__ = ["VERDICTS_TYPE", "StartVerdictSender"]

log = logging.getLogger(__name__)

VERDICTS_TYPE = "missions.v1.StartVerdicts"


class StartVerdictSender:
    """Collects the verdicts of one applied batch (``hear``) and sends them (``send``)."""

    def __init__(self, connection: AbstractConnection, names: Topology) -> None:
        self._connection = connection
        self._names = names
        self._channel: AbstractChannel | None = None
        self._pending: dict[str, worker_pb2.StartVerdicts] = {}  # by worker session
        self.sent = 0  # answers sent, one per STARTED

    def hear(self, started: events_pb2.MissionEvent, run: bool) -> None:
        """Note the verdict on ``started`` (MissionStore.apply_batch's ``on_start``)."""
        verdicts = self._pending.setdefault(started.started.worker_session, worker_pb2.StartVerdicts())
        (verdicts.run if run else verdicts.refused).append(started.id)

    def take(self) -> dict[str, worker_pb2.StartVerdicts]:
        """The verdicts heard since the last call, by worker session."""
        pending, self._pending = self._pending, {}
        return pending

    async def send(self) -> None:
        """Send the verdicts heard since the last call, one message per worker session."""
        for session, verdicts in self.take().items():
            message = aio_pika.Message(
                verdicts.SerializeToString(),
                type=VERDICTS_TYPE,
                delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            )
            try:
                with broker_call("verdicts not sent"):
                    if self._channel is None:
                        self._channel = await self._connection.channel(publisher_confirms=False)
                    queue = self._names.session_queue(session)
                    await self._channel.default_exchange.publish(message, routing_key=queue)
            except BrokerUnavailableError as exc:
                log.debug("verdicts for worker session %s not sent (%s): it will ask again", session, exc)
                self._channel = None  # a channel the broker closed does not come back: open another
                continue
            self.sent += len(verdicts.run) + len(verdicts.refused)
