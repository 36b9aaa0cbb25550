"""The log's word on this worker's STARTED events: whether it runs each attempt.

Copies of one work message (a redelivery, a dispatch retried after a lost confirm) can
reach two workers at once; both publish STARTED, and the log orders them. Every service
replica answers each STARTED once its follower has applied it
(mission_service/start_verdicts.py), on this worker session's own queue: run (this
STARTED came first, the mission runs the attempt here) or refused. The first answer
counts; replicas that answer later agree with it.

An answer can be lost (a broker restart empties the session queue; no replica runs):
a worker that has heard nothing for a while asks again by publishing the same STARTED
with a new id, which the log keeps as a duplicate no reader sees, and takes the answer
to either, pausing longer each time. So an attempt never starts without the log's word,
and waits, rather than runs, while no replica answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from google.protobuf.message import DecodeError

from missions.events import reissued
from missions.topology import Topology
from missions.v1 import events_pb2, worker_pb2

__all__ = ["Verdicts"]

log = logging.getLogger(__name__)

# Asking again: after this long without an answer, then twice as long each time, up to the cap.
_FIRST_ASK_AGAIN_S = 10.0
_MAX_ASK_AGAIN_S = 60.0
# A session queue outlives its worker by this long (its answers are then of no use to anyone).
_SESSION_QUEUE_EXPIRES_MS = 10 * 60 * 1000

AskAgain = Callable[[events_pb2.MissionEvent], Awaitable[object]]


class Verdicts:
    """Answers to this session's STARTED events, by event id."""

    def __init__(self, names: Topology, session: str, ask_again_after: float = _FIRST_ASK_AGAIN_S) -> None:
        """``ask_again_after``: seconds without an answer before the first asking again."""
        self._queue = names.session_queue(session)
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self._ask_again_after = ask_again_after
        self.asked_again = 0

    async def listen(self, connection: AbstractConnection) -> None:
        """Declare this session's queue and take the answers that reach it (again after a
        reconnect: the connection is robust)."""
        channel = await connection.channel()
        # Not exclusive: after a reconnect the broker may not yet have dropped the old
        # connection, which would still hold an exclusive queue of this name.
        queue = await channel.declare_queue(
            self._queue, durable=False, arguments={"x-expires": _SESSION_QUEUE_EXPIRES_MS}
        )
        await queue.consume(self._on_answers, no_ack=True)

    def expect(self, started_id: str) -> asyncio.Future[bool]:
        """The answer to the STARTED with this id: True to run. Call before publishing it."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[started_id] = answer
        answer.add_done_callback(lambda _: self._waiting.pop(started_id, None))
        return answer

    async def wait(
        self, started: events_pb2.MissionEvent, answer: asyncio.Future[bool], ask_again: AskAgain
    ) -> bool | None:
        """``answer`` to ``started``, or the answer to ``started`` asked again through
        ``ask_again`` (a confirmed publish) whenever none came for a while; None once
        ``answer`` is cancelled (the worker stops waiting: it is stopping, or the mission
        was cancelled)."""
        answers = {answer}
        pause = self._ask_again_after
        try:
            while True:
                done, _ = await asyncio.wait(answers, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
                if done:
                    if any(finished.cancelled() for finished in done):
                        return None  # stopping wins over an answer that came in the same instant
                    return done.pop().result()
                again = reissued(started)
                log.info(
                    "mission %s attempt %d: no word from the service on its STARTED for %.0f s; asking again",
                    started.mission_id,
                    started.attempt,
                    pause,
                )
                self.asked_again += 1
                answers.add(self.expect(again.id))
                await ask_again(again)
                pause = min(pause * 2, _MAX_ASK_AGAIN_S)
        finally:
            for waiting in answers:
                waiting.cancel()

    def hear(self, verdicts: worker_pb2.StartVerdicts) -> None:
        """Resolve the answers ``verdicts`` gives (those nobody waits for any more are dropped)."""
        for started_ids, run in ((verdicts.run, True), (verdicts.refused, False)):
            for started_id in started_ids:
                answer = self._waiting.get(started_id)
                if answer is not None and not answer.done():
                    answer.set_result(run)

    async def _on_answers(self, message: AbstractIncomingMessage) -> None:
        try:
            verdicts = worker_pb2.StartVerdicts.FromString(message.body)
        except DecodeError as exc:
            log.warning("skipping an undecodable answer on %s: %s", self._queue, exc)
            return
        self.hear(verdicts)
