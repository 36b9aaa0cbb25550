"""A MissionServicer over a real grpc.aio server on 127.0.0.1:0, with the broker faked, for
the servicer's unit tests.

Only the broker is replaced: ``FakeBroker`` numbers each published event like the log
stream would and hands it to a real LogFollower's apply loop, which commits it to a real
MissionStore, resolves read-your-writes waiters and fans it out through a real Hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mission_service.app import BrokerSide, build_service
from mission_service.commands import MissionCommands
from mission_service.follower import LogFollower
from mission_service.grpc_server import SERVICE_NAME, serving_grpc
from mission_service.operations import MissionOperations
from mission_service.recent import DEFAULT_RECENT_EVENTS
from mission_service.settings import DEFAULT_MAX_WATCH_STREAMS, ServiceSettings
from mission_service.store import MissionStore
from mission_service.tokens import TokenFile, hash_token
from mission_service.watch import EventFilter, Hub, Subscription
from mission_service.worker_registry import WorkerRegistry
from missions.errors import BrokerUnavailableError
from missions.eventlog import EventPublisher, ReadTally
from missions.events import new_event
from missions.health import HealthConditions
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2_grpc
from missions.v1 import mission_service_pb2 as pb
from tests.unit.factories import details_of, struct

E = events_pb2
M = mission_pb2
TIMEOUT = 10.0


class FakeBroker:
    """RabbitMQ's exchange and log stream, in memory.

    ``publish`` is confirmed once the event is appended to the log with the next
    sequence; the event then reaches the follower the way read_log would deliver it.
    ``dispatch`` puts a work message on the work queue; each is recorded with the number
    of events the log held at that moment. ``dispatch_failures`` fail before confirming.
    """

    def __init__(self) -> None:
        self.log: list[events_pb2.MissionEvent] = []
        self.priorities: list[int | None] = []
        self.work: list[tuple[events_pb2.MissionEvent, int | None, int]] = []
        self.dispatch_failures = 0
        self.lost_confirms = 0  # publishes that are stored but answered with an error
        self.dispatched = asyncio.Event()  # set by each work message
        self._grown = asyncio.Event()  # set (and replaced) by each event the log stores
        self.failure: Exception | None = None
        # When set, publishes wait for it (the broker is slow to confirm); ``held`` counts them.
        self.gate: asyncio.Event | None = None
        self.held = 0
        self.holding = asyncio.Condition()
        self.depths_asked: list[list[str]] = []
        self.replays: list[int] = []  # where each read of the log but the follower's started
        self.confirms = 0  # as EventPublisher.confirms
        self.dispatch_delay = 0.0  # each work message waits this long for its confirm, one after another
        self._dispatching = asyncio.Lock()
        self.replaying = asyncio.Event()  # set by the first replay

    async def publish(
        self, event: events_pb2.MissionEvent, *, priority: int | None = None, timeout: float = 10.0
    ) -> None:
        if self.failure is not None:
            raise self.failure
        if self.gate is not None:
            async with self.holding:
                self.held += 1
                self.holding.notify_all()
            await self.gate.wait()
        self.store(event, priority)
        if self.lost_confirms:
            self.lost_confirms -= 1
            raise BrokerUnavailableError("broker did not confirm the event: connection lost")
        self.confirms += 1

    def store(self, event: events_pb2.MissionEvent, priority: int | None = None, sequence: int = 0) -> None:
        """Append ``event`` to the log at ``sequence`` (by default the next), for the follower to read."""
        stored = events_pb2.MissionEvent()
        stored.CopyFrom(event)
        stored.sequence = sequence or (self.log[-1].sequence + 1 if self.log else 1)
        self.log.append(stored)
        self.priorities.append(priority)
        self._grown.set()
        self._grown = asyncio.Event()

    async def dispatch(
        self, event: events_pb2.MissionEvent, *, priority: int | None = None, timeout: float = 10.0
    ) -> None:
        if self.dispatch_failures:
            self.dispatch_failures -= 1
            raise BrokerUnavailableError("broker did not confirm the work message")
        async with self._dispatching:
            await asyncio.sleep(self.dispatch_delay)
        self.work.append((event, priority, len(self.log)))
        self.confirms += 1
        self.dispatched.set()

    async def queue_depths(self, mission_types: Sequence[str]) -> tuple[dict[str, int], int]:
        """Each type's work queue: missions whose last event made them runnable; dead letters:
        DEAD_LETTERED events. ``depths_asked`` records the types of each call."""
        self.depths_asked.append(list(mission_types))
        last: dict[str, events_pb2.MissionEvent] = {}
        for event in self.log:
            last[event.mission_id] = event
        runnable = {E.EVENT_TYPE_CREATED, E.EVENT_TYPE_REDRIVEN}
        depths = dict.fromkeys(mission_types, 0)
        for event in last.values():
            if event.type in runnable and event.mission_type in depths:
                depths[event.mission_type] += 1
        dead = sum(1 for event in self.log if event.type == E.EVENT_TYPE_DEAD_LETTERED)
        return depths, dead

    async def read(
        self,
        after_sequence: int,
        *,
        attached: asyncio.Event | None = None,
        tally: ReadTally | None = None,
        gaps: bool = False,
    ) -> AsyncGenerator[events_pb2.MissionEvent, None]:
        """The log after ``after_sequence``, then what is appended to it, as read_log reads it.

        The follower's read is the one that passes ``attached``; ``replays`` records the others.
        """
        if attached is None:
            self.replays.append(after_sequence)
            self.replaying.set()
        else:
            attached.set()
        index = 0
        while True:
            grown = self._grown
            for event in self.log[index:]:
                index += 1
                if event.sequence > after_sequence:
                    copy = events_pb2.MissionEvent()
                    copy.CopyFrom(event)
                    yield copy
            if index == len(self.log):
                await grown.wait()


class ObservedHub(Hub):
    """A real Hub that reports subscriptions coming and going."""

    def __init__(self, head: int, buffer: int) -> None:
        super().__init__(head, buffer)
        self.subscribed = asyncio.Event()
        self.unsubscribed = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, event_filter: EventFilter) -> Iterator[Subscription]:
        self.unsubscribed.clear()
        with super().subscribe(event_filter) as sub:
            self.subscribed.set()
            try:
                yield sub
            finally:
                self.subscribed.clear()
                self.unsubscribed.set()


@dataclass
class Service:
    stub: mission_service_pb2_grpc.MissionServiceStub
    broker: FakeBroker
    store: MissionStore
    hub: ObservedHub
    follower: LogFollower
    workers: WorkerRegistry
    commands: MissionCommands
    operations: MissionOperations
    tokens: TokenFile | None

    async def worker_publishes(self, *events: events_pb2.MissionEvent) -> None:
        """Publish as a worker would, and wait until the follower has applied the last one."""
        applied = self.follower.expect(events[-1].id)
        for event in events:
            await self.broker.publish(event)
        await asyncio.wait_for(applied, TIMEOUT)

    async def worker_publishes_now(self, event: events_pb2.MissionEvent) -> None:
        """``worker_publishes`` past the broker's gate (another client's publish that goes through)."""
        applied = self.follower.expect(event.id)
        self.broker.store(event)
        await asyncio.wait_for(applied, TIMEOUT)

    async def run_to_completion(self, mission: M.Mission, **result: Any) -> None:
        await self.worker_publishes(*success_events(mission, **result))

    async def submit(self, **fields: Any) -> M.Mission:
        request = pb.SubmitMissionRequest(**{"type": "echo", **fields})
        response = await self.stub.SubmitMission(request, timeout=TIMEOUT)
        mission = response.mission
        assert isinstance(mission, M.Mission)
        return mission


def worker_event(mission: M.Mission, kind: events_pb2.EventType.ValueType, attempt: int = 1) -> events_pb2.MissionEvent:
    return new_event(mission, kind, source="worker-1", correlation_id="c", attempt=attempt)


def success_events(mission: M.Mission, **result: Any) -> list[events_pb2.MissionEvent]:
    started = worker_event(mission, E.EVENT_TYPE_STARTED)
    started.started.worker_id = "worker-1"
    progress = worker_event(mission, E.EVENT_TYPE_PROGRESS)
    progress.progress.fraction = 0.5
    completed = worker_event(mission, E.EVENT_TYPE_COMPLETED)
    completed.completed.result.CopyFrom(struct(**result))
    return [started, progress, completed]


@contextlib.asynccontextmanager
async def running_service(
    buffer: int = 10_000,
    clock: Callable[[], float] = time.monotonic,
    recent_events: int = DEFAULT_RECENT_EVENTS,
    queue_timeout: float = 5.0,
    tokens_file: pathlib.Path | None = None,
    max_watch_streams: int = DEFAULT_MAX_WATCH_STREAMS,
    watch_heartbeat: timedelta = timedelta(seconds=15),
) -> AsyncIterator[Service]:
    """The service as app.build_service wires it and grpc_server serves it (its interceptors
    included), with the broker faked; ``buffer`` is each watcher's live buffer.

    ``clock`` drives the worker registry, which heartbeats reach through ``Service.workers``.
    ``recent_events`` bounds the window replays are served from before the (fake) log.
    With ``tokens_file`` callers need a token.
    """
    settings = ServiceSettings(
        namespace="unit",
        listen="127.0.0.1:0",
        shutdown_grace=timedelta(0),
        watch_buffer=buffer,
        recent_events=recent_events,
        queue_timeout=timedelta(seconds=queue_timeout),
        tokens_file=tokens_file,
        max_watch_streams=max_watch_streams,
        watch_heartbeat=watch_heartbeat,
    )
    broker = FakeBroker()
    with MissionStore(":memory:") as store:
        built = build_service(
            settings,
            BrokerSide(cast(EventPublisher, broker), broker.read, broker.queue_depths),
            store,
            source="mission-service/tests",
            hub=ObservedHub(head=store.checkpoint(), buffer=buffer),
            workers=WorkerRegistry(clock),
        )
        health = HealthConditions(SERVICE_NAME)
        tokens = TokenFile(tokens_file) if tokens_file is not None else None
        async with serving_grpc(settings, built.servicer, built.hub, health, None, tokens) as port:
            following = asyncio.create_task(built.follower.run())
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            try:
                yield Service(
                    stub=mission_service_pb2_grpc.MissionServiceStub(channel),
                    broker=broker,
                    store=store,
                    hub=cast(ObservedHub, built.hub),
                    follower=built.follower,
                    workers=built.workers,
                    commands=built.commands,
                    operations=built.operations,
                    tokens=tokens,
                )
            finally:
                await channel.close()
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following


async def start_attempt(service: Service, mission: M.Mission, attempt: int = 1, session: str = "session-1") -> None:
    started = worker_event(mission, E.EVENT_TYPE_STARTED, attempt=attempt)
    started.started.worker_id = "worker-1"
    started.started.worker_session = session
    await service.worker_publishes(started)


async def dead_letter(service: Service, mission: M.Mission, error_type: str = "NonRetryableError") -> M.Mission:
    """Run ``mission``'s first attempt into a non-retryable failure (of ``error_type``), and dead-letter it."""
    await start_attempt(service, mission)
    error = M.MissionError(type=error_type, message="bad input", retryable=False)
    failed = worker_event(mission, E.EVENT_TYPE_FAILED)
    failed.failed.error.CopyFrom(error)
    dead = worker_event(mission, E.EVENT_TYPE_DEAD_LETTERED)
    dead.dead_lettered.reason = "non-retryable error after attempt 1 of 3"
    dead.dead_lettered.last_error.CopyFrom(error)
    dead.dead_lettered.mission.CopyFrom(mission)
    await service.worker_publishes(failed, dead)
    stored = service.store.get(mission.id)
    assert stored is not None
    assert stored.dead_lettered
    return stored


def published_events(service: Service, kind: events_pb2.EventType.ValueType) -> list[events_pb2.MissionEvent]:
    return [event for event in service.broker.log if event.type == kind]


def tokens_file(directory: pathlib.Path, **roles: str) -> pathlib.Path:
    """A tokens file where the token of each principal is ``<name>-token``."""
    path = directory / "tokens.toml"
    path.write_text(
        "".join(
            f'[tokens.{hash_token(name + "-token")}]\nprincipal = "{name}"\nroles = ["{role}"]\n'
            for name, role in roles.items()
        )
    )
    return path


def as_principal(name: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {name}-token"),)


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    [bad_request] = details_of(status.details, error_details_pb2.BadRequest)
    return [violation.field for violation in bad_request.field_violations]
