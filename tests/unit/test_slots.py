"""Slots: at most ``size`` taken, freed slots to the best waiter, nothing leaked by cancel or close."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from worker_service.slots import Slots, SlotsClosedError


async def _settle() -> None:
    """Let every task that can run do so (a granted waiter needs one loop iteration to wake)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _waiter(slots: Slots, priority: int = 0) -> asyncio.Task[None]:
    """A task queued for a slot (the slots must all be taken)."""
    waiting = slots.waiting
    task = asyncio.create_task(slots.acquire(priority))
    await _settle()
    assert slots.waiting == waiting + 1, "expected the acquire to wait"
    return task


async def test_never_more_than_size_are_taken() -> None:
    slots = Slots(2)
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    third = asyncio.create_task(slots.acquire())
    await _settle()
    assert first.done() and second.done()
    assert not third.done()
    assert (slots.taken, slots.waiting) == (2, 1)

    slots.release()
    await _settle()
    assert third.done()
    assert (slots.taken, slots.waiting) == (2, 0)  # the freed slot passed to the waiter
    slots.release()
    slots.release()
    assert slots.taken == 0


async def test_a_freed_slot_goes_to_the_highest_priority_waiter_then_first_come() -> None:
    slots = Slots(1)
    await slots.acquire()
    granted: asyncio.Queue[str] = asyncio.Queue()

    async def wait(name: str, priority: int) -> None:
        await slots.acquire(priority)
        granted.put_nowait(name)

    tasks = []
    for name, priority in [("low-1", 1), ("high-1", 3), ("normal", 2), ("low-2", 1), ("high-2", 3)]:
        tasks.append(asyncio.create_task(wait(name, priority)))
        await _settle()  # arrive in this order
    assert slots.waiting == 5

    order = []
    for _ in tasks:
        slots.release()  # the holder of the moment is done
        async with asyncio.timeout(5):
            order.append(await granted.get())
        assert slots.taken == 1
    assert order == ["high-1", "high-2", "normal", "low-1", "low-2"]
    await asyncio.gather(*tasks)


async def test_a_cancelled_waiter_leaves_the_queue_and_no_slot_behind() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = await _waiter(slots)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (slots.taken, slots.waiting) == (1, 0)

    slots.release()
    assert slots.taken == 0
    async with asyncio.timeout(5):
        await slots.acquire()  # free at once
    assert slots.taken == 1


async def test_a_waiter_cancelled_as_it_is_granted_the_slot_frees_it() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = await _waiter(slots)

    slots.release()  # the slot passes to the waiter ...
    waiter.cancel()  # ... which is cancelled in the same loop iteration, before it wakes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (slots.taken, slots.waiting) == (0, 0)
    async with asyncio.timeout(5):
        await slots.acquire()
    assert slots.taken == 1


async def test_a_waiter_cancelled_as_it_is_granted_the_slot_passes_it_to_the_next() -> None:
    slots = Slots(1)
    await slots.acquire()
    first = await _waiter(slots, priority=3)
    second = await _waiter(slots, priority=1)

    slots.release()  # to ``first``, cancelled before it wakes: the slot goes on to ``second``
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    async with asyncio.timeout(5):
        await second
    assert (slots.taken, slots.waiting) == (1, 0)
    slots.release()
    assert slots.taken == 0


async def test_close_refuses_waiters_and_later_acquires_while_held_slots_stay_taken() -> None:
    slots = Slots(2)
    await slots.acquire()
    await slots.acquire()
    waiters = [await _waiter(slots), await _waiter(slots, priority=4)]

    slots.close()
    for waiter in waiters:
        with pytest.raises(SlotsClosedError):
            await waiter
    assert (slots.taken, slots.waiting) == (2, 0)  # running attempts keep their slots

    with pytest.raises(SlotsClosedError):
        await slots.acquire()
    slots.release()
    assert slots.taken == 1
    with pytest.raises(SlotsClosedError):
        await slots.acquire()  # a free slot is not given either, once closed
    slots.release()
    assert slots.taken == 0


async def test_a_waiter_cancelled_as_close_refuses_it_frees_no_slot() -> None:
    # In the consumer: the hold limit's timeout cancels the waiting delivery in the same loop
    # iteration as the worker stopping closes the slots.
    slots = Slots(1)
    await slots.acquire()  # a running attempt
    waiter = await _waiter(slots)

    slots.close()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.taken == 1  # the running attempt still holds its slot


class SlotsMachine(RuleBasedStateMachine):
    """Random acquires, releases and cancels against a model of who holds and who waits.

    After every step the event loop runs until idle, then: ``taken`` is exactly the
    holders (so never above ``size``), nobody waits while a slot is free, and each freed
    slot went to the waiter the model expects (highest priority, then first come).
    Teardown releases every holder: each waiter then gets a slot in turn (no deadlock).
    """

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.size = 0
        self.slots: Slots | None = None
        self.arrivals = itertools.count()
        self.holders: list[asyncio.Task[None]] = []
        self.waiters: dict[asyncio.Task[None], tuple[int, int]] = {}  # task -> (-priority, arrival)

    def _run(self) -> None:
        self.loop.run_until_complete(_settle())

    def _best_waiter(self) -> asyncio.Task[None] | None:
        return min(self.waiters, key=self.waiters.__getitem__, default=None)

    def _pass_on(self) -> None:
        """Model: a freed slot goes to the best waiter, if any."""
        best = self._best_waiter()
        if best is not None:
            del self.waiters[best]
            self.holders.append(best)

    @precondition(lambda self: self.slots is None)
    @rule(size=st.integers(min_value=1, max_value=4))
    def open(self, size: int) -> None:
        self.size = size
        self.slots = Slots(size)

    @precondition(lambda self: self.slots is not None)
    @rule(priority=st.integers(min_value=0, max_value=4))
    def acquire(self, priority: int) -> None:
        assert self.slots is not None
        task = self.loop.create_task(self.slots.acquire(priority))
        if len(self.holders) < self.size:
            self.holders.append(task)
        else:
            self.waiters[task] = (-priority, next(self.arrivals))
        self._run()

    @precondition(lambda self: self.holders)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        assert self.slots is not None
        self.holders.remove(data.draw(st.sampled_from(self.holders)))
        self.slots.release()
        self._pass_on()
        self._run()

    @precondition(lambda self: self.waiters)
    @rule(data=st.data())
    def cancel_waiter(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(sorted(self.waiters, key=self.waiters.__getitem__)))
        del self.waiters[task]
        task.cancel()
        self._run()

    @precondition(lambda self: self.holders and self.waiters)
    @rule(data=st.data())
    def release_then_cancel_the_waiter_it_goes_to(self, data: st.DataObject) -> None:
        assert self.slots is not None
        self.holders.remove(data.draw(st.sampled_from(self.holders)))
        self.slots.release()
        granted = self._best_waiter()
        assert granted is not None
        granted.cancel()  # in the same loop iteration: it never wakes holding the slot
        del self.waiters[granted]
        self._pass_on()  # the slot goes on to the next waiter, or is freed
        self._run()

    @invariant()
    def taken_is_the_holders(self) -> None:
        if self.slots is None:
            return
        assert self.slots.taken == len(self.holders) <= self.size
        assert self.slots.waiting == len(self.waiters)
        assert all(task.done() and task.exception() is None for task in self.holders)
        assert not any(task.done() for task in self.waiters)

    @invariant()
    def nobody_waits_while_a_slot_is_free(self) -> None:
        if self.slots is not None and self.waiters:
            assert self.slots.taken == self.size

    def teardown(self) -> None:
        try:
            if self.slots is not None:
                while self.holders:
                    self.holders.pop(0)
                    self.slots.release()
                    self._pass_on()
                    self._run()
                    self.taken_is_the_holders()
                assert not self.waiters, "a waiter never got a slot"
                assert self.slots.taken == 0
        finally:
            self.loop.run_until_complete(_cancel(list(self.waiters)))
            self.loop.close()


TestSlotsMachine = SlotsMachine.TestCase
TestSlotsMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
