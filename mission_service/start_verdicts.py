"""The service's answers to the workers' STARTED events: which worker runs each attempt.

A worker runs an attempt only once the log says its STARTED came first (copies of one
work message, taken by two workers in the same instant, must not both run). Every
replica's follower reads every STARTED anyway, so it answers: after each batch it
applies, one StartVerdicts message per worker session whose STARTED events the batch
held, to that session's queue. The worker takes the first answer; the others (one per
replica) find nothing waiting. So the broker's work per mission does not grow with the
number of workers, as it did while every worker read every STARTED itself.

Answers are transient and unconfirmed, and sent by a task of their own: the follower
never waits for the broker to take them (a blocked or broken publisher connection must
not stall the read model), and while they cannot go out the oldest are dropped. One
that is lost costs the worker a question again (worker_service/verdicts.py), never a run.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from missions.amqp import broker_call, close_channel
from missions.errors import BrokerUnavailableError
from missions.topology import Topology
from missions.v1 import events_pb2, worker_pb2

__all__ = ["VERDICTS_TYPE", "StartVerdictSender"]

log = logging.getLogger(__name__)

VERDICTS_TYPE = "missions.v1.StartVerdicts"

# Answers waiting to go out; beyond this the oldest are dropped (their workers ask again).
_MAX_WAITING = 10_000
# A worker session as workers make them (a uuid4's hex); anything else in a STARTED is
# not ours to answer, and could not even name a queue.
_SESSION = re.compile(r"[0-9A-Za-z_-]{1,64}")


class StartVerdictSender:
    """Collects the verdicts of each applied batch (``hear``, then ``flush``) and sends them (``run``)."""

    def __init__(self, connection: AbstractConnection, names: Topology) -> None:
        self._connection = connection
        self._names = names
        self._pending: dict[str, worker_pb2.StartVerdicts] = {}  # by worker session, this batch's
        self._outgoing: deque[tuple[str, worker_pb2.StartVerdicts]] = deque(maxlen=_MAX_WAITING)
        self._ready = asyncio.Event()
        self.sent = 0  # answers sent, one per STARTED

    def hear(self, started: events_pb2.MissionEvent, run: bool) -> None:
        """Note the verdict on ``started`` (MissionStore.apply_batch's ``on_start``)."""
        session = started.started.worker_session
        if _SESSION.fullmatch(session) is None:
            log.warning("STARTED %s names no worker session we could answer (%r): no answer", started.id, session)
            return
        verdicts = self._pending.setdefault(session, worker_pb2.StartVerdicts())
        (verdicts.run if run else verdicts.refused).append(started.id)

    def take(self) -> dict[str, worker_pb2.StartVerdicts]:
        """The verdicts heard since the last call, by worker session."""
        pending, self._pending = self._pending, {}
        return pending

    def flush(self) -> None:
        """Hand what was heard since the last flush to ``run``, one message per worker session."""
        self._outgoing.extend(self.take().items())
        if self._outgoing:
            self._ready.set()

    async def run(self) -> None:
        """Send what ``flush`` hands over, until cancelled."""
        channel: AbstractChannel | None = None
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._outgoing:
                    session, verdicts = self._outgoing.popleft()
                    try:
                        with broker_call("verdicts not sent"):
                            if channel is None:
                                channel = await self._connection.channel(publisher_confirms=False)
                            await channel.default_exchange.publish(
                                aio_pika.Message(
                                    verdicts.SerializeToString(),
                                    type=VERDICTS_TYPE,
                                    delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                                ),
                                routing_key=self._names.session_queue(session),
                                mandatory=False,  # a session whose queue is gone needs no answer
                            )
                    except BrokerUnavailableError as exc:
                        log.debug("verdicts for worker session %s not sent (%s): it will ask again", session, exc)
                        if channel is not None:
                            # A channel the broker closed does not come back: open another.
                            await close_channel(channel)
                            channel = None
                        continue
                    self.sent += len(verdicts.run) + len(verdicts.refused)
        finally:
            if channel is not None:
                await close_channel(channel)
