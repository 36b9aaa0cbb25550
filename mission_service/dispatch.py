"""Work messages: a mission reaches the work queue only after the log holds the event that
queued it (CREATED, REDRIVEN, or DUE for a mission that was SCHEDULED), so no worker event
can precede that event in the log.

The log also decides which event queues a mission: when concurrent submissions with one
idempotency key (or concurrent redrives) each append one, every replica's projection keeps
the first and records the others as duplicates. So the work message goes out only once
this replica's log follower has applied the event and it took effect; a duplicate gets
none, and one mission gets one work message however many replicas raced.

Appending the event and dispatching its work message run as one task that the caller's
cancellation (a client gone, a deadline passed) cannot stop in between; once the log has
shown the event, its work message is retried until the broker confirms it. An append
whose confirm never came may still have reached the log: if the log shows the event
within a minute, its work message follows then.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from missions.errors import BrokerUnavailableError
from missions.retrying_publisher import RetryingPublisher
from missions.v1 import events_pb2

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

# Appends an event to the log (confirmed), with the work queue priority of its mission.
Append = Callable[[events_pb2.MissionEvent, int | None], Awaitable[None]]
# Resolved once the log shows the event with this id: True when it took effect, False when
# the projection recorded it as a duplicate (LogFollower.expect).
Logged = Callable[[str], Awaitable[bool]]

# How long the log may take to show an appended event (its confirm lost, or the follower
# slow) and still get its work message.
_LOGGED_WAIT_S = 60.0

# How long a stopping service lets work messages still in flight reach the broker.
_CLOSE_GRACE_S = 5.0

_Key = tuple[str, int]  # mission id, generation


class Dispatcher:
    """Appends work-queuing events and dispatches the work messages of those that took effect."""

    def __init__(self, retrying: RetryingPublisher, logged: Logged) -> None:
        self._retrying = retrying
        self._logged = logged
        self._in_flight: dict[_Key, asyncio.Task[None]] = {}
        self._watching: set[asyncio.Task[None]] = set()  # unconfirmed appends, waiting to show in the log

    async def append(
        self,
        event: events_pb2.MissionEvent,
        priority: int | None,
        append: Append,
        *,
        work: events_pb2.MissionEvent | None = None,
    ) -> None:
        """``append`` the event, wait until the log shows it, then dispatch its work message
        (``work``, by default the event itself: a DUE's work is its mission's CREATED)
        unless it was a duplicate; return once that is done. Raises what ``append`` raises;
        the work message then goes out only if the log shows the event within a minute
        (a lost confirm)."""
        work = event if work is None else work
        await self._start(event, self._append_then_dispatch(event, priority, append, work), join=False)

    async def dispatch(self, event: events_pb2.MissionEvent, priority: int | None) -> None:
        """Dispatch the work message of ``event``, whose mission the log already holds; joins
        the dispatch in flight for the same mission and generation, if there is one."""
        await self._start(event, self._retrying.dispatch(event, priority=priority), join=True)

    async def _append_then_dispatch(
        self, event: events_pb2.MissionEvent, priority: int | None, append: Append, work: events_pb2.MissionEvent
    ) -> None:
        # Watched from before the append: the log may show the event before its confirm comes.
        shown = asyncio.ensure_future(self._logged(event.id))
        try:
            await append(event, priority)
        except BrokerUnavailableError:
            watch = asyncio.create_task(self._dispatch_if_logged(event, priority, shown, work))
            self._watching.add(watch)
            watch.add_done_callback(self._watching.discard)
            raise
        except BaseException:
            shown.cancel()
            raise
        if await self._took_effect(event, shown, confirmed=True):
            await self._retrying.dispatch(work, priority=priority)

    async def _dispatch_if_logged(
        self,
        event: events_pb2.MissionEvent,
        priority: int | None,
        shown: asyncio.Future[bool],
        work: events_pb2.MissionEvent,
    ) -> None:
        """Dispatch the work message of ``event``, whose append was not confirmed, if the log
        shows it after all (the broker stored it and only its confirm was lost)."""
        if await self._took_effect(event, shown):
            log.info(
                "mission %s: its %s reached the log without a confirm; dispatching it",
                event.mission_id,
                events_pb2.EventType.Name(event.type),
            )
            await self.dispatch(work, priority)

    @staticmethod
    async def _took_effect(
        event: events_pb2.MissionEvent, shown: asyncio.Future[bool], *, confirmed: bool = False
    ) -> bool:
        """Whether the log shows ``event`` (within a minute) as the one that queued its mission.

        An event the broker ``confirmed`` is in the log: if this replica's follower does not
        show it in time, the caller must not hear that its mission was queued
        (BrokerUnavailableError), since no work message goes out for it here.
        """
        try:
            took_effect = await asyncio.wait_for(shown, _LOGGED_WAIT_S)
        except TimeoutError:
            if confirmed:
                raise BrokerUnavailableError(
                    f"mission {event.mission_id} not queued: this replica's log did not show its"
                    f" {events_pb2.EventType.Name(event.type)} within {_LOGGED_WAIT_S:.0f} s; it exists:"
                    " retry with the same idempotency key"
                ) from None
            log.warning(
                "mission %s: the log did not show its %s %s within %.0f s: no work message for it",
                event.mission_id,
                events_pb2.EventType.Name(event.type),
                event.id,
                _LOGGED_WAIT_S,
            )
            return False
        if not took_effect:
            log.info(
                "mission %s: a concurrent %s came first in the log, and only that one gets a work message",
                event.mission_id,
                events_pb2.EventType.Name(event.type),
            )
        return took_effect

    async def _start(self, event: events_pb2.MissionEvent, work: Coroutine[Any, Any, None], *, join: bool) -> None:
        key = (event.mission_id, event.generation)
        task = self._in_flight.get(key)
        if join and task is not None and not task.done():
            work.close()
        else:
            task = asyncio.create_task(work, name=f"dispatch {event.mission_id}")
            self._in_flight[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        await asyncio.shield(task)

    def _forget(self, key: _Key, task: asyncio.Task[None]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if not task.cancelled() and (error := task.exception()) is not None:
            # Its caller, if still there, answers with it; a gone caller must not hide it.
            log.warning("mission %s: not queued (%s)", key[0], error)

    async def __aenter__(self) -> Dispatcher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Give the work messages in flight a moment to be confirmed, then stop the rest,
        naming their missions: they stay QUEUED until a SubmitMission retried with their
        idempotency key dispatches them again."""
        watches = list(self._watching)
        for watch in watches:
            watch.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        tasks = dict(self._in_flight)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks.values(), timeout=_CLOSE_GRACE_S)
        for (mission_id, _), task in tasks.items():
            if task in pending:
                log.error("mission %s: work message not confirmed before shutdown; it stays QUEUED", mission_id)
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
