"""The read side of MissionService, free of gRPC: missions, pages, dead letters, stats,
workers and event streams, answered from this replica's projection of the log."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from mission_service import paging, validation
from mission_service.dead_letters import DeadLetters
from mission_service.filters import EventFilter
from mission_service.follower import LogFollower
from mission_service.labels import parse_label_selector
from mission_service.limits import Limits
from mission_service.quota import StreamQuota
from mission_service.settings import DEFAULT_MAX_WATCH_STREAMS
from mission_service.store import MissionStore
from mission_service.tokens import Principal
from mission_service.watch import Hub, Idle, watch
from mission_service.worker_registry import WorkerRegistry
from missions.errors import NotFoundError
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2

__all__ = ["MissionQueries", "QueriesConfig", "QueueDepths", "find_mission"]

M = mission_pb2

# Given mission types: the messages ready in each type's work queue (by type), and in the
# dead-letter queue (work messages that could not be read).
QueueDepths = Callable[[Sequence[str]], Awaitable[tuple[dict[str, int], int]]]


@dataclass(frozen=True, slots=True)
class QueriesConfig:
    limits: Limits
    watch_heartbeat: timedelta = timedelta(seconds=15)
    # Concurrent WatchEvents streams per authenticated principal (0: no limit).
    max_watch_streams: int = DEFAULT_MAX_WATCH_STREAMS


def find_mission(store: MissionStore, mission_id: str, limits: Limits) -> mission_pb2.Mission:
    """The mission ``mission_id`` names; InvalidArgumentError or NotFoundError."""
    validation.validate_mission_id(mission_id, limits)
    mission = store.get(mission_id)
    if mission is None:
        raise NotFoundError(f"mission {mission_id!r} not found")
    return mission


class MissionQueries:
    """Answers from the projected store, the worker registry, the broker's queue depths,
    and (for WatchEvents) the log."""

    def __init__(
        self,
        config: QueriesConfig,
        store: MissionStore,
        follower: LogFollower,
        hub: Hub,
        workers: WorkerRegistry,
        queue_depths: QueueDepths,
    ) -> None:
        self._config = config
        self._store = store
        self._follower = follower
        self._hub = hub
        self._workers = workers
        self._queue_depths = queue_depths
        self._watch_quota = StreamQuota(config.max_watch_streams)
        # Labels never change after submission, so a cache is always right.
        self._labels_of = functools.lru_cache(maxsize=10_000)(self._labels)

    def _labels(self, mission_id: str) -> Mapping[str, str]:
        mission = self._store.get(mission_id)
        return dict(mission.labels) if mission is not None else {}

    def get(self, mission_id: str) -> mission_pb2.Mission:
        return find_mission(self._store, mission_id, self._config.limits)

    def list(self, request: mission_service_pb2.ListMissionsRequest) -> mission_service_pb2.ListMissionsResponse:
        validation.validate_list(request, self._config.limits)
        size = paging.page_size(request.page_size, self._config.limits)
        labels = parse_label_selector(request.label_selector, self._config.limits)
        id_prefix = request.id_prefix.lower()  # ids are lower-case UUIDs
        create_time = validation.time_bounds(request, "min_create_time", "max_create_time")
        end_time = validation.time_bounds(request, "min_end_time", "max_end_time")
        newest_first = validation.newest_first(request.order_by)
        # The token is bound to every filter and the order, so that a page of one list never
        # continues another (its position means "after" in one order and "before" in the other).
        more: paging.Filters = {
            "labels": labels,
            "id_prefix": id_prefix,
            "create_time": create_time if create_time != (None, None) else None,
            "end_time": end_time if end_time != (None, None) else None,
            "newest_first": newest_first or None,
        }
        after = paging.decode_page_token(request.page_token, request.states, request.type, more)
        page = self._store.list(
            states=sorted(set(request.states)),
            mission_type=request.type,
            after_created_sequence=after,
            limit=size,
            labels=labels,
            id_prefix=id_prefix,
            create_time=create_time,
            end_time=end_time,
            newest_first=newest_first,
        )
        token = (
            paging.encode_page_token(page.last_created_sequence, request.states, request.type, more)
            if page.more
            else ""
        )
        return mission_service_pb2.ListMissionsResponse(missions=page.missions, next_page_token=token)

    def list_dead_letters(
        self, request: mission_service_pb2.ListDeadLettersRequest
    ) -> mission_service_pb2.ListDeadLettersResponse:
        size = paging.page_size(request.page_size, self._config.limits)
        matching = DeadLetters.parse(request.type, request.error_type, request.label_selector, self._config.limits)
        page = matching.page(self._store, matching.decode_page_token(request.page_token), size)
        token = matching.encode_page_token(page.last_created_sequence) if page.more else ""
        return mission_service_pb2.ListDeadLettersResponse(missions=page.missions, next_page_token=token)

    async def stats(self) -> mission_service_pb2.GetStatsResponse:
        counts = self._store.counts_by_state()
        waiting = self._store.waiting_by_type()
        workers = self._workers.active_by_type()
        # Every type with waiting missions or a live worker; a waiting type without a
        # worker is what an operator needs to see (its missions wait for one to start).
        mission_types = sorted(waiting.keys() | workers.keys())
        depths, unreadable = await self._queue_depths(mission_types)
        hour_ago = time.time() - 3600
        return mission_service_pb2.GetStatsResponse(
            states=[mission_service_pb2.StateCount(state=state, count=n) for state, n in sorted(counts.items())],
            queue_depth=sum(depths.values()),
            dead_letter_depth=self._store.count_dead_letters(),
            unreadable_messages=unreadable,
            running=counts.get(M.MISSION_STATE_RUNNING, 0),
            succeeded_last_hour=self._store.ended_since(M.MISSION_STATE_SUCCEEDED, hour_ago),
            failed_last_hour=self._store.ended_since(M.MISSION_STATE_FAILED, hour_ago),
            active_workers=self._workers.active(),
            last_sequence=self._follower.position,
            events_read=self._follower.tally.events,
            records_read=self._follower.tally.records,
            mission_types=[
                mission_service_pb2.MissionTypeStats(
                    mission_type=mission_type,
                    waiting=waiting.get(mission_type, 0),
                    queue_depth=depths.get(mission_type, 0),
                    active_workers=workers.get(mission_type, 0),
                )
                for mission_type in mission_types
            ],
        )

    def workers(self, request: mission_service_pb2.ListWorkersRequest) -> mission_service_pb2.ListWorkersResponse:
        return mission_service_pb2.ListWorkersResponse(workers=self._workers.list(request.include_gone))

    @contextlib.asynccontextmanager
    async def watching(
        self, request: mission_service_pb2.WatchEventsRequest, caller: Principal
    ) -> AsyncIterator[AsyncIterator[events_pb2.MissionEvent | Idle]]:
        """The events ``request`` asks for, then Idle while none come, for as long as the block
        runs; counts against the caller's WatchEvents streams (ResourceExhaustedError past the limit).

        What refuses a request (the limit, a bad field, an unknown mission) raises on entry,
        before the first item: the HTTP API answers it with a status of its own rather than
        inside an event stream it has begun.
        """
        with self._watch_quota.stream(caller):
            validation.validate_watch(request, self._config.limits)
            event_filter = EventFilter(
                mission_ids=frozenset(request.mission_ids),
                types=frozenset(request.types),
                mission_types=frozenset(request.mission_types),
                labels=parse_label_selector(request.label_selector, self._config.limits),
                labels_of=self._labels_of,
            )
            start: int | None = request.after_sequence if request.HasField("after_sequence") else None
            finished: list[str] = []
            generations: dict[str, int] = {}
            if request.mission_ids:
                positions = self._store.positions(request.mission_ids)
                missing = [mission_id for mission_id in request.mission_ids if mission_id not in positions]
                if missing:
                    raise NotFoundError(f"mission {missing[0]!r} not found")
                if start is None:
                    start = min(created for created, _ in positions.values()) - 1
                finished = [mid for mid, (_, final) in positions.items() if final is not None and final <= start]
                generations = {mid: mission.redrive_count for mid in positions if (mission := self._store.get(mid))}
            idle = self._config.watch_heartbeat.total_seconds()
            stream = watch(self._hub, self._follower.replay, event_filter, start, finished, generations, idle=idle)
            async with contextlib.aclosing(stream) as events:
                yield events
