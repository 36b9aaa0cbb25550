"""``Client``: MissionService from synchronous code."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeAlias, Unpack

import grpc

from missions import errors
from missions.client._connection import Connection, Metadata
from missions.client._errors import from_rpc_error
from missions.client._messages import (
    BULK_TIMEOUT_S,
    WATCH_RETRIES,
    ClientBase,
    DeadLetterFilters,
    ListFilters,
    ScheduleOptions,
    State,
    SubmitOptions,
    WatchFilters,
    batch_results,
    correlation,
    dead_letter_filter,
    dead_letters_request,
    deadline_of,
    list_request,
    next_page,
    outcome,
    schedule_request,
    submit_request,
    wait_cursor,
    watch_request,
)
from missions.client._watch import WatchCursor
from missions.events import TERMINAL_STATES
from missions.v1 import events_pb2, mission_pb2, schedule_pb2, worker_pb2
from missions.v1 import mission_service_pb2 as pb

__all__ = ["Client"]

Interceptor: TypeAlias = grpc.UnaryUnaryClientInterceptor | grpc.UnaryStreamClientInterceptor


class Client(ClientBase[Interceptor, grpc.Channel]):
    """MissionService over one channel, which the client owns: use it as a context manager.

    Methods return the protobuf messages (``missions.v1.mission_pb2.Mission``, ...);
    ``payload_dict``/``result_dict`` read a mission's Structs as dicts. A failed call raises
    the ``missions.errors.ServiceError`` subclass of its status. The constructor's arguments
    (server, timeout, TLS, token, config, profile, interceptors, settings, connect) are ``ClientBase``'s
    (missions/client/_messages.py); each left None comes from ``MISSIONS_*`` or the config file.
    """

    def _open(
        self,
        connection: Connection,
        interceptors: Sequence[Interceptor],
        connect: Callable[[str], grpc.Channel] | None,
    ) -> grpc.Channel:
        return grpc.intercept_channel((connect or connection.channel)(self.settings.server), *interceptors)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; calls under way are cancelled."""
        self._channel.close()

    def _call(
        self,
        method: Any,
        request: Any,
        deadline: float | None = None,
        metadata: Metadata = (),
        longest: float | None = None,
    ) -> Any:
        timeout = self._timeout(deadline, longest)
        try:
            return method(request, timeout=timeout, metadata=(*self._metadata, *metadata))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def submit(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        correlation_id: str | None = None,
        **options: Unpack[SubmitOptions],
    ) -> mission_pb2.Mission:
        """Queue a mission of handler ``type`` (e.g. ``"echo"``) with ``payload`` (JSON-like) and
        ``options`` (``SubmitOptions``: priority, labels, idempotency_key, max_attempts, timeout,
        delay, due_time); returns it with its id, QUEUED (SCHEDULED when due later; further
        along if a worker was quick).
        ``correlation_id`` (up to 128 characters) becomes the mission's, to find it in the
        caller's logs; without it the service makes one."""
        request = submit_request(type, payload, **options)
        metadata = correlation(correlation_id)
        response: pb.SubmitMissionResponse = self._call(self._stub.SubmitMission, request, metadata=metadata)
        return response.mission

    def submit_many(
        self, requests: Iterable[pb.SubmitMissionRequest]
    ) -> builtins.list[mission_pb2.Mission | errors.ServiceError]:
        """Queue many missions in one call (build each with ``missions.client.submit_request``):
        per mission, in order, the mission or the exception SubmitMission would have raised."""
        response = self._call(self._stub.SubmitMissions, pb.SubmitMissionsRequest(missions=requests))
        return batch_results(response)

    def get(self, mission_id: str) -> mission_pb2.Mission:
        """The mission; ``NotFoundError`` for an unknown id."""
        return self._get(mission_id, None)

    def _get(self, mission_id: str, deadline: float | None) -> mission_pb2.Mission:
        request = pb.GetMissionRequest(mission_id=mission_id)
        response: pb.GetMissionResponse = self._call(self._stub.GetMission, request, deadline)
        return response.mission

    def list(
        self, *, states: Iterable[State] = (), type: str = "", page_size: int = 0, **filters: Unpack[ListFilters]
    ) -> Iterator[mission_pb2.Mission]:
        """Every mission (optionally only in ``states``, of ``type``, and matching ``filters``:
        ``labels``, ``id_prefix``, ``min_create_time`` and the other time bounds of
        ``ListFilters``), oldest first (``newest_first=True``: newest first), page by page."""
        for page in self.list_pages(states=states, type=type, page_size=page_size, **filters):
            yield from page.missions

    def list_pages(
        self,
        *,
        states: Iterable[State] = (),
        type: str = "",
        page_size: int = 0,
        page_token: str = "",
        **filters: Unpack[ListFilters],
    ) -> Iterator[pb.ListMissionsResponse]:
        """The same listing as the service's pages, from the one at ``page_token`` on: each page's
        ``next_page_token`` lets a later call go on from there."""
        request = next_page(list_request(states, type, page_size, **filters), page_token)
        return self._pages(self._stub.ListMissions, request)

    def dead_letters(
        self, *, page_size: int = 0, **filters: Unpack[DeadLetterFilters]
    ) -> Iterator[mission_pb2.Mission]:
        """Every dead-lettered mission that ``filters`` take (``type``, ``error_type``, ``labels``),
        oldest first, page by page; ``error`` holds the last error."""
        for page in self.dead_letter_pages(page_size=page_size, **filters):
            yield from page.missions

    def dead_letter_pages(
        self, *, page_size: int = 0, page_token: str = "", **filters: Unpack[DeadLetterFilters]
    ) -> Iterator[pb.ListDeadLettersResponse]:
        """The same listing as the service's pages, from the one at ``page_token`` on."""
        request = next_page(dead_letters_request(page_size, **filters), page_token)
        return self._pages(self._stub.ListDeadLetters, request)

    def _pages(self, method: Any, request: Any) -> Iterator[Any]:
        while True:
            page = self._call(method, request)
            yield page
            if not page.next_page_token:
                return
            request = next_page(request, page.next_page_token)

    def cancel(self, mission_id: str, reason: str = "") -> mission_pb2.Mission:
        """Cancel a mission; ``FailedPreconditionError`` when it has finished."""
        request = pb.CancelMissionRequest(mission_id=mission_id, reason=reason)
        response: pb.CancelMissionResponse = self._call(self._stub.CancelMission, request)
        return response.mission

    def redrive(self, mission_id: str, max_attempts: int = 0) -> mission_pb2.Mission:
        """Queue a dead-lettered mission again (returned QUEUED, or further along if a worker was quick);
        ``FailedPreconditionError`` unless it is dead-lettered."""
        request = pb.RedriveMissionRequest(mission_id=mission_id, max_attempts=max_attempts)
        response: pb.RedriveMissionResponse = self._call(self._stub.RedriveMission, request)
        return response.mission

    def redrive_dead_letters(
        self,
        *,
        max_attempts: int = 0,
        dry_run: bool = False,
        timeout: float = BULK_TIMEOUT_S,
        **filters: Unpack[DeadLetterFilters],
    ) -> pb.RedriveDeadLettersResponse:
        """Redrive every dead letter ``filters`` take, as ``redrive`` would (admin only); with
        ``dry_run`` only count and name them. ``count`` says how many, ``mission_ids`` the
        first 1000. ``timeout`` is the call's deadline in seconds, longer than other calls'."""
        request = pb.RedriveDeadLettersRequest(
            filter=dead_letter_filter(**filters), max_attempts=max_attempts, dry_run=dry_run
        )
        response: pb.RedriveDeadLettersResponse = self._call(self._stub.RedriveDeadLetters, request, longest=timeout)
        return response

    def purge_dead_letters(
        self, *, dry_run: bool = False, timeout: float = BULK_TIMEOUT_S, **filters: Unpack[DeadLetterFilters]
    ) -> pb.PurgeDeadLettersResponse:
        """Purge every dead letter ``filters`` take (admin only): each stays FAILED, no longer
        listed nor redrivable. With ``dry_run`` only count and name them; ``timeout`` as for
        ``redrive_dead_letters``."""
        request = pb.PurgeDeadLettersRequest(filter=dead_letter_filter(**filters), dry_run=dry_run)
        response: pb.PurgeDeadLettersResponse = self._call(self._stub.PurgeDeadLetters, request, longest=timeout)
        return response

    def workers(self, *, include_gone: bool = False) -> builtins.list[worker_pb2.Worker]:
        """The workers heard from recently."""
        response: pb.ListWorkersResponse = self._call(
            self._stub.ListWorkers, pb.ListWorkersRequest(include_gone=include_gone)
        )
        return list(response.workers)

    def stats(self) -> pb.GetStatsResponse:
        """Mission counts, queue depths, recent outcomes and the log position."""
        response: pb.GetStatsResponse = self._call(self._stub.GetStats, pb.GetStatsRequest())
        return response

    def watch(self, **filters: Unpack[WatchFilters]) -> Iterator[events_pb2.MissionEvent]:
        """The events that match every filter given (``WatchFilters``), in log order (WatchEvents).

        The iterator resumes by itself, with no gap and no duplicate, when the stream is cut
        (UNAVAILABLE: a restart or a network fault; RESOURCE_EXHAUSTED: too slow a reader),
        after a backoff with jitter; it raises after ``WATCH_RETRIES`` failures in a row.
        Heartbeats are consumed inside.
        """
        return self._follow(WatchCursor(watch_request(**filters), retries=WATCH_RETRIES))

    def _follow(self, cursor: WatchCursor) -> Iterator[events_pb2.MissionEvent]:
        while True:
            call = self._stub.WatchEvents(cursor.request(), timeout=cursor.remaining(), metadata=self._metadata)
            try:
                for response in call:
                    if (event := cursor.accept(response)) is not None:
                        yield event
                return
            except grpc.RpcError as exc:
                delay = cursor.retry_delay(from_rpc_error(exc))
            finally:
                call.cancel()
            time.sleep(delay)

    def wait(self, mission_id: str, timeout: float | None = None) -> mission_pb2.Mission:
        """The mission once it has finished (SUCCEEDED, FAILED or CANCELLED). A FAILED mission's
        DEAD_LETTERED may follow a moment later: until then it is not ``dead_lettered`` yet.

        Raises:
            TimeoutError: it has not finished within ``timeout`` seconds.
        """
        deadline = deadline_of(timeout)
        mission = self._get(mission_id, deadline)
        while mission.state not in TERMINAL_STATES:
            for _ in self._follow(wait_cursor(mission, deadline)):
                break
            mission = self._get(mission_id, deadline)
        return mission

    def result(self, mission_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The result of the mission once it has succeeded, as a dict (integral numbers as ints).

        Raises:
            MissionFailed: it failed; ``.error`` is its last error.
            MissionCancelled: it was cancelled.
            TimeoutError: it has not finished within ``timeout`` seconds.
        """
        return outcome(self.wait(mission_id, timeout))

    def create_schedule(
        self, type: str, payload: dict[str, Any] | None = None, **options: Unpack[ScheduleOptions]
    ) -> schedule_pb2.Schedule:
        """Create a schedule that submits a mission of handler ``type`` with ``payload`` at each firing
        time (``options``: ``ScheduleOptions``, with ``cron`` or ``interval``); returns it ACTIVE with
        its ``next_fire_time``. ``AlreadyExistsError`` when ``schedule_id`` is taken."""
        request = schedule_request(type, payload, **options)
        response: pb.CreateScheduleResponse = self._call(self._stub.CreateSchedule, request)
        return response.schedule

    def get_schedule(self, schedule_id: str) -> schedule_pb2.Schedule:
        """The schedule; ``NotFoundError`` for an unknown or deleted id."""
        request = pb.GetScheduleRequest(schedule_id=schedule_id)
        response: pb.GetScheduleResponse = self._call(self._stub.GetSchedule, request)
        return response.schedule

    def list_schedules(self, *, page_size: int = 0) -> Iterator[schedule_pb2.Schedule]:
        """Every schedule not deleted, oldest first, page by page."""
        for page in self._pages(self._stub.ListSchedules, pb.ListSchedulesRequest(page_size=page_size)):
            yield from page.schedules

    def pause_schedule(self, schedule_id: str) -> schedule_pb2.Schedule:
        """Stop a schedule from firing until ``resume_schedule`` (its creator or an admin)."""
        request = pb.PauseScheduleRequest(schedule_id=schedule_id)
        response: pb.PauseScheduleResponse = self._call(self._stub.PauseSchedule, request)
        return response.schedule

    def resume_schedule(self, schedule_id: str) -> schedule_pb2.Schedule:
        """Let a paused schedule fire again, from its next firing time after now."""
        request = pb.ResumeScheduleRequest(schedule_id=schedule_id)
        response: pb.ResumeScheduleResponse = self._call(self._stub.ResumeSchedule, request)
        return response.schedule

    def delete_schedule(self, schedule_id: str) -> schedule_pb2.Schedule:
        """Delete a schedule (its missions stay); returns it as it was."""
        request = pb.DeleteScheduleRequest(schedule_id=schedule_id)
        response: pb.DeleteScheduleResponse = self._call(self._stub.DeleteSchedule, request)
        return response.schedule
