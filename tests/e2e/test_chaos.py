"""End to end chaos: a thousand mixed missions while workers are killed and the broker link is cut.

Sized for a 2-core machine (about a minute of work). Every process reaches RabbitMQ
through one loopback proxy (tests/proxy.py). The chaos is driven by the log itself:
each step fires once a number of missions have finished, and submissions keep a
bounded window of unfinished missions, so every step hits work in flight.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.e2e.test_broker_faults import (
    NOT_SERVING,
    RECOVERY_TIMEOUT,
    SERVING,
    FaultStack,
    LogWatch,
    Member,
    all_reach,
    assert_the_log_replays_alike,
    describe,
    watching_health,
)
from tests.proxy import TcpProxy
from tests.support import payload

pytestmark = pytest.mark.e2e

E = events_pb2
M = mission_pb2

MISSIONS = 1000
# Unfinished missions allowed at once: keeps every worker busy and work in flight at each step.
WINDOW = 150
WORKER_ARGS = ("--concurrency", "16", "--heartbeat-interval", "1", "--retry-base", "0.05", "--retry-max", "0.2")
# Enough attempts that the chaos (two kills, one cut) cannot exhaust a mission that should succeed.
ROOMY_ATTEMPTS = 6
TERMINAL_EVENTS = {E.EVENT_TYPE_COMPLETED, E.EVENT_TYPE_DEAD_LETTERED}


def _request(n: int) -> tuple[pb.SubmitMissionRequest, bool]:
    """The n-th mission of the mix and whether it must succeed.

    Per 20: 10 echo, 4 sleep (0.05-0.2 s), 4 fail once then succeed, 2 fail every time
    with 2 attempts (dead-lettered).
    """
    kind = n % 20
    if kind < 10:
        request = pb.SubmitMissionRequest(type="echo", payload=payload(n=n))
    elif kind < 14:
        request = pb.SubmitMissionRequest(type="sleep", payload=payload(seconds=round(0.05 + 0.01 * (n % 16), 2), n=n))
    elif kind < 18:
        request = pb.SubmitMissionRequest(type="fail", payload=payload(fail_times=1, n=n))
    else:
        return pb.SubmitMissionRequest(type="fail", payload=payload(fail_times=10, n=n), max_attempts=2), False
    request.max_attempts = ROOMY_ATTEMPTS
    return request, True


@dataclass
class Submitter:
    """Submits the mix, keeping at most WINDOW missions unfinished; pauses while the broker is cut."""

    stack: FaultStack
    log: LogWatch
    missions: list[M.Mission] = field(default_factory=list)
    must_succeed: set[str] = field(default_factory=set)
    broker_up: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # no SubmitMission in flight

    async def run(self) -> None:
        self.broker_up.set()
        self.idle.set()
        for n in range(MISSIONS):
            await self.log.wait(lambda: len(self.missions) - len(self.log.finals) < WINDOW, "room to submit", 120)
            await self.broker_up.wait()
            request, succeeds = _request(n)
            self.idle.clear()
            try:
                mission = (await self.stack.stub.SubmitMission(request, timeout=30)).mission
            finally:
                self.idle.set()
            self.missions.append(mission)
            if succeeds:
                self.must_succeed.add(mission.id)

    async def pause(self) -> None:
        """Stop submitting, and wait for the submission in flight (if any) to return."""
        self.broker_up.clear()
        await self.idle.wait()


async def _replace_worker(stack: FaultStack, workers: list[Member], index: int) -> None:
    """SIGKILL workers[index] and start a replacement (a new session; the old one is LOST)."""
    workers[index].process.kill()
    workers[index] = await stack.start_worker_member(*WORKER_ARGS)


async def _cut(proxy: TcpProxy, members: Sequence[Member], submitter: Submitter, seconds: float) -> None:
    """Sever every broker connection for ``seconds``, then wait until every process is SERVING again."""
    await submitter.pause()
    async with watching_health(members) as health:
        await all_reach(health, SERVING, 30)
        proxy.sever()
        await all_reach(health, NOT_SERVING, 15)
        await asyncio.sleep(seconds)  # hold the outage open
        proxy.restore()
        await all_reach(health, SERVING, RECOVERY_TIMEOUT)
    submitter.broker_up.set()


async def _finished(log: LogWatch, count: int) -> None:
    await log.wait(lambda: len(log.finals) >= count, f"{count} finished missions", 120)


async def _chaos(
    proxy: TcpProxy, stack: FaultStack, log: LogWatch, service: Member, workers: list[Member], submitter: Submitter
) -> list[str]:
    """Kill a worker at 200 and 450 finished missions, cut the broker at 700; returns what happened when."""
    steps = []
    for finished, index in ((200, 0), (450, 1)):
        await _finished(log, finished)
        steps.append(f"kill worker {index} at {len(log.finals)} finished, {len(submitter.missions)} submitted")
        await _replace_worker(stack, workers, index)
    await _finished(log, 700)
    steps.append(f"cut at {len(log.finals)} finished, {len(submitter.missions)} submitted")
    await _cut(proxy, [service, *workers], submitter, 3)
    return steps


@pytest.mark.timeout(300)
async def test_a_thousand_missions_survive_killed_workers_and_a_cut_broker_link(
    proxy: TcpProxy, proxied: FaultStack
) -> None:
    service = await proxied.start_service_member("--reap-interval", "0.5")
    workers = [await proxied.start_worker_member(*WORKER_ARGS) for _ in range(3)]
    async with LogWatch(proxied) as log:
        submitter = Submitter(proxied, log)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(submitter.run())
            chaos = tasks.create_task(_chaos(proxy, proxied, log, service, workers, submitter))
        assert len(submitter.missions) == MISSIONS
        ids = [mission.id for mission in submitter.missions]
        await log.until_final(ids, timeout=120)

        # Every mission ended, in the state its mix promises.
        states: Counter[int] = Counter()
        last = 0  # the last event of them all
        for mission_id in ids:
            mission = (await proxied.stub.GetMission(pb.GetMissionRequest(mission_id=mission_id))).mission
            states[mission.state] += 1
            last = max(last, mission.last_sequence)
            expected = M.MISSION_STATE_SUCCEEDED if mission_id in submitter.must_succeed else M.MISSION_STATE_FAILED
            assert mission.state == expected, f"{chaos.result()}\n{mission}\n{describe(log.events, [mission_id])}"
        assert states[M.MISSION_STATE_SUCCEEDED] == len(submitter.must_succeed)

        # The whole log, as a live watcher saw it and as a replay shows it, and one terminal
        # event per mission.
        events = await log.through(last)
    await assert_the_log_replays_alike(proxied, events)
    # Distinct ids: an event whose confirm was lost may be in the log twice (guarantees.md).
    terminal = Counter(
        mission_id for mission_id, _ in {(e.mission_id, e.id) for e in events if e.type in TERMINAL_EVENTS}
    )
    wrong = {mission_id: terminal[mission_id] for mission_id in ids if terminal[mission_id] != 1}
    assert not wrong, f"terminal events per mission should be 1, got {wrong}\nchaos: {chaos.result()}\n" + describe(
        events, list(wrong)[:5]
    )
    dead = {event.mission_id for event in events if event.type == E.EVENT_TYPE_DEAD_LETTERED}
    assert dead == set(ids) - submitter.must_succeed
