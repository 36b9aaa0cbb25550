"""Run slots: at most ``size`` attempts at once, the next slot to the highest-priority waiter."""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["Slots", "SlotsClosedError"]


class SlotsClosedError(Exception):
    """The worker is stopping: no slot will be given any more."""


class Slots:
    """A priority semaphore: waiters get a freed slot highest priority first, then first come.

    A worker's look-ahead (deliveries prefetched while every slot is taken) waits here, so
    a CRITICAL mission that arrives behind a LOW one in the look-ahead still runs first.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.taken = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._closed = False

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, priority: int = 0) -> None:
        """Take a slot, waiting for one if none is free; raises SlotsClosedError once closed."""
        if self._closed:
            raise SlotsClosedError
        if self.taken < self.size:
            self.taken += 1
            return
        entry = (-priority, next(self._arrivals), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, entry)
        try:
            await entry[2]
        except asyncio.CancelledError:
            granted = entry[2].done() and not entry[2].cancelled() and entry[2].exception() is None
            if granted:
                self.release()  # given a slot just as we were cancelled: pass it on
            elif entry in self._waiters:  # not refused by close() either: still queued
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def release(self) -> None:
        """Give the slot to the best waiter, or free it."""
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: ``taken`` stays the same
                return
        self.taken -= 1

    def close(self) -> None:
        """Refuse every waiter and every later acquire (running attempts keep their slots)."""
        self._closed = True
        waiters, self._waiters = self._waiters, []
        for _, _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(SlotsClosedError())
