"""What both clients share: ``ClientBase`` (settings, channel, stub), the request builders
and the response readers.

Client and AsyncClient differ only in how they call; each of their methods is a builder
from here, one call, and a reader from here.
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeAlias, TypedDict, TypeVar, Unpack

from missions import errors
from missions.client._connection import Connection, Metadata
from missions.client._errors import MissionCancelled, MissionFailed, from_submit_error
from missions.client._payloads import result_dict, struct_from
from missions.client._settings import ClientSettings
from missions.client._watch import WatchCursor
from missions.events import FINAL_EVENT_TYPES
from missions.metadata import CORRELATION_KEY
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2_grpc, schedule_pb2
from missions.v1 import mission_service_pb2 as pb

__all__ = [
    "BULK_TIMEOUT_S",
    "WATCH_RETRIES",
    "ClientBase",
    "DeadLetterFilters",
    "ListFilters",
    "Priority",
    "ScheduleOptions",
    "State",
    "SubmitOptions",
    "WatchFilters",
    "batch_results",
    "correlation",
    "dead_letter_filter",
    "dead_letters_request",
    "deadline_of",
    "list_request",
    "next_page",
    "outcome",
    "schedule_request",
    "submit_request",
    "wait_cursor",
    "watch_request",
]

Priority: TypeAlias = mission_pb2.Priority.ValueType | str
"""A priority: ``mission_pb2.PRIORITY_HIGH`` or its short name, ``"high"``."""
State: TypeAlias = mission_pb2.MissionState.ValueType

BULK_TIMEOUT_S = 600.0
"""Deadline of a bulk operation on dead letters: about 1.5 ms per redriven mission
(bench/dead_letters.py), so 10 minutes covers some 400,000."""

WATCH_RETRIES = 20
"""Failed attempts in a row after which ``watch`` gives up (about 40 s of backoff in all, on average)."""


PathArg: TypeAlias = str | os.PathLike[str]
InterceptorT = TypeVar("InterceptorT")
ChannelT = TypeVar("ChannelT")


class ClientBase(Generic[InterceptorT, ChannelT]):
    """What Client and AsyncClient share: settings, channel, stub and call metadata.

    Args:
        server: the service's HOST:PORT.
        timeout: deadline of each unary call, in seconds.
        tls: TLS, verifying the server with the system's CAs.
        tls_ca: TLS, verifying the server with this CA bundle.
        tls_cert, tls_key: the client certificate and key, for mTLS.
        token: the bearer token.
        token_file: a file holding the bearer token.
        config: the config file (default ``MISSIONS_CONFIG``, else
            ``~/.config/missions/missionctl.toml``).
        profile: the config file's profile (default ``MISSIONS_PROFILE``).
        interceptors: gRPC client interceptors every call goes through (tracing, auth).
        settings: settings resolved already (missionctl passes ``ClientSettings.from_args``);
            the setting arguments above must then be left None.
        connect: opens the channel to a HOST:PORT instead of the plaintext or TLS channel the
            settings describe (tests pass a grpc_testing channel); the client closes it. An
            ``AsyncClient`` takes no ``interceptors`` with it: the channel is used as opened.

    Each setting left None comes from its ``MISSIONS_*`` variable, else the config file, else
    its default, as for missionctl (docs/configuration.md).

    Raises:
        ValueError: a setting, variable or the config file is invalid.
    """

    def __init__(
        self,
        server: str | None = None,
        *,
        timeout: float | None = None,
        tls: bool | None = None,
        tls_ca: PathArg | None = None,
        tls_cert: PathArg | None = None,
        tls_key: PathArg | None = None,
        token: str | None = None,
        token_file: PathArg | None = None,
        config: PathArg | None = None,
        profile: str | None = None,
        interceptors: Sequence[InterceptorT] = (),
        settings: ClientSettings | None = None,
        connect: Callable[[str], ChannelT] | None = None,
    ) -> None:
        paths = {"tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key, "token_file": token_file}
        given: dict[str, Any] = {
            name: None if path is None else pathlib.Path(path).expanduser() for name, path in paths.items()
        }
        given |= {"server": server, "timeout": timeout, "tls": tls, "token": token}
        if settings is None:
            settings = ClientSettings.resolve(given, config=config, profile=profile)
        elif any(value is not None for value in (*given.values(), config, profile)):
            raise ValueError("pass either settings or the setting arguments, not both")
        self.settings = settings
        connection = Connection.from_settings(settings)
        self._metadata = tuple(connection.metadata)
        self._channel = self._open(connection, interceptors, connect)
        self._stub = mission_service_pb2_grpc.MissionServiceStub(self._channel)

    def _open(
        self, connection: Connection, interceptors: Sequence[InterceptorT], connect: Callable[[str], ChannelT] | None
    ) -> ChannelT:
        raise NotImplementedError

    def _timeout(self, deadline: float | None, longest: float | None = None) -> float:
        """A unary call's deadline: ``longest``, by default the settings' timeout, shortened to
        what is left of ``deadline``."""
        longest = self.settings.timeout if longest is None else longest
        if deadline is None:
            return longest
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        return min(longest, left)


def _priority(priority: Priority | None) -> mission_pb2.Priority.ValueType:
    if priority is None:
        return mission_pb2.PRIORITY_UNSPECIFIED
    if isinstance(priority, str):
        return mission_pb2.Priority.Value(f"PRIORITY_{priority.upper()}")
    return priority


class SubmitOptions(TypedDict, total=False):
    """The options of a submission; each left out takes the service's default.

    Attributes:
        priority: ``"low"``, ``"normal"`` (the default), ``"high"``, ``"critical"`` or the enum value.
        labels: free-form labels.
        idempotency_key: a retry with the same key returns the original mission.
        max_attempts: attempts including the first; 0 means the service's default (3).
        timeout: one attempt's time limit, in seconds or a timedelta; the worker's default without.
        delay: start no earlier than this long after the service accepts it, in seconds or a
            timedelta; the mission is SCHEDULED until then.
        due_time: start no earlier than this instant, a timezone-aware datetime (with ``delay``
            too, the later of the two); one in the past starts at once.
    """

    priority: Priority
    labels: Mapping[str, str]
    idempotency_key: str
    max_attempts: int
    timeout: float | timedelta
    delay: float | timedelta
    due_time: datetime


def submit_request(
    type: str, payload: dict[str, Any] | None = None, **options: Unpack[SubmitOptions]
) -> pb.SubmitMissionRequest:
    """The SubmitMissionRequest for a mission of handler ``type`` (as ``submit_many`` takes them)."""
    request = pb.SubmitMissionRequest(
        type=type,
        payload=struct_from(payload),
        priority=_priority(options.get("priority")),
        labels=dict(options.get("labels") or {}),
        idempotency_key=options.get("idempotency_key", ""),
        max_attempts=options.get("max_attempts", 0),
    )
    if (timeout := options.get("timeout")) is not None:
        request.timeout.FromTimedelta(_span(timeout))
    if (delay := options.get("delay")) is not None:
        request.delay.FromTimedelta(_span(delay))
    if (due_time := options.get("due_time")) is not None:
        if due_time.tzinfo is None:
            raise ValueError("due_time must be timezone-aware (a naive datetime could be any zone's)")
        request.due_time.FromDatetime(due_time)
    return request


class ScheduleOptions(TypedDict, total=False):
    """When a schedule fires and what its missions are; ``cron`` or ``interval`` is required.

    Attributes:
        schedule_id: its id (lowercase letters, digits and '-', AIP-122); the service makes one without.
        cron: a 5-field cron expression, read in ``time_zone`` (an IANA name; UTC without).
        time_zone: the time zone of ``cron``.
        interval: fire every this long from its creation, in seconds or a timedelta.
        overlap: ``"skip"`` (the default: no firing while the previous mission runs) or ``"allow"``.
        catch_up: ``"one"`` (the default: one late firing for those missed while no service ran)
            or ``"skip"``.
        priority, labels, max_attempts, timeout: of each mission, as in ``SubmitOptions``.
    """

    schedule_id: str
    cron: str
    time_zone: str
    interval: float | timedelta
    overlap: str
    catch_up: str
    priority: Priority
    labels: Mapping[str, str]
    max_attempts: int
    timeout: float | timedelta


def schedule_request(
    type: str, payload: dict[str, Any] | None = None, **options: Unpack[ScheduleOptions]
) -> pb.CreateScheduleRequest:
    """The CreateScheduleRequest of a schedule that submits missions of handler ``type``."""
    mission = submit_request(
        type,
        payload,
        priority=options.get("priority", mission_pb2.PRIORITY_UNSPECIFIED),
        labels=options.get("labels", {}),
        max_attempts=options.get("max_attempts", 0),
    )
    schedule = schedule_pb2.Schedule(
        mission_template=schedule_pb2.MissionTemplate(
            type=mission.type,
            payload=mission.payload,
            priority=mission.priority,
            max_attempts=mission.max_attempts,
            labels=mission.labels,
        ),
        cron=options.get("cron", ""),
        time_zone=options.get("time_zone", ""),
    )
    if (timeout := options.get("timeout")) is not None:
        schedule.mission_template.timeout.FromTimedelta(_span(timeout))
    if (interval := options.get("interval")) is not None:
        schedule.interval.FromTimedelta(_span(interval))
    if overlap := options.get("overlap"):
        schedule.overlap_policy = schedule_pb2.OverlapPolicy.Value(f"OVERLAP_POLICY_{overlap.upper()}")
    if catch_up := options.get("catch_up"):
        schedule.catch_up_policy = schedule_pb2.CatchUpPolicy.Value(f"CATCH_UP_POLICY_{catch_up.upper()}")
    return pb.CreateScheduleRequest(schedule=schedule, schedule_id=options.get("schedule_id", ""))


def _span(value: float | timedelta) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


def correlation(correlation_id: str | None) -> Metadata:
    """The call metadata that gives a submission ``correlation_id`` (None: none)."""
    return () if correlation_id is None else ((CORRELATION_KEY, correlation_id),)


def batch_results(response: pb.SubmitMissionsResponse) -> list[mission_pb2.Mission | errors.ServiceError]:
    """Each mission of a batch, or the exception SubmitMission would have raised for it."""
    return [
        result.mission if result.HasField("mission") else from_submit_error(result.error) for result in response.results
    ]


class WatchFilters(TypedDict, total=False):
    """What a watch delivers: the events that match every filter given.

    Attributes:
        mission_ids: only these missions' events, past ones first (unless ``after_sequence``);
            the watch ends once every one has ended.
        types: only these event types.
        mission_types: only missions of these handler types.
        labels: only missions carrying all these labels.
        after_sequence: start after this log position (0: the whole retained log); without
            it (and without ``mission_ids``), live events only.
    """

    mission_ids: Iterable[str]
    types: Iterable[events_pb2.EventType.ValueType]
    mission_types: Iterable[str]
    labels: Mapping[str, str]
    after_sequence: int


def watch_request(**filters: Unpack[WatchFilters]) -> pb.WatchEventsRequest:
    """The WatchEventsRequest of ``filters``; ``labels`` become its label selector."""
    request = pb.WatchEventsRequest(
        mission_ids=filters.get("mission_ids", ()),
        types=filters.get("types", ()),
        mission_types=filters.get("mission_types", ()),
        label_selector=_selector(filters.get("labels")),
    )
    if (after_sequence := filters.get("after_sequence")) is not None:
        request.after_sequence = after_sequence
    return request


class ListFilters(TypedDict, total=False):
    """Which missions a listing yields: those that match every filter given.

    Attributes:
        labels: only missions carrying all these labels.
        id_prefix: only missions whose id starts with this (8 to 36 hex digits and dashes).
        min_create_time, max_create_time: only missions created at or after / before this instant.
        min_end_time, max_end_time: only missions that ended at or after / before this instant
            (either leaves out the missions not finished yet).
        newest_first: the newest missions first (ListMissions' ``order_by="create_time desc"``);
            without it, the oldest first.

    A naive datetime is taken as UTC, as protobuf's ``Timestamp.FromDatetime`` does.
    """

    labels: Mapping[str, str]
    id_prefix: str
    min_create_time: datetime
    max_create_time: datetime
    min_end_time: datetime
    max_end_time: datetime
    newest_first: bool


def _selector(labels: Mapping[str, str] | None) -> str:
    return ",".join(f"{key}={value}" for key, value in (labels or {}).items())


def list_request(
    states: Iterable[State], type: str, page_size: int, **filters: Unpack[ListFilters]
) -> pb.ListMissionsRequest:
    """The ListMissionsRequest of the first page of a listing; ``labels`` become its label selector."""
    request = pb.ListMissionsRequest(
        states=states,
        type=type,
        page_size=page_size,
        label_selector=_selector(filters.get("labels")),
        id_prefix=filters.get("id_prefix", ""),
        order_by="create_time desc" if filters.get("newest_first") else "",
    )
    for bound in ("min_create_time", "max_create_time", "min_end_time", "max_end_time"):
        if (instant := filters.get(bound)) is not None:
            getattr(request, bound).FromDatetime(instant)
    return request


class DeadLetterFilters(TypedDict, total=False):
    """Which dead letters a listing, a bulk redrive or a purge takes: those that match every
    filter given (none: every dead letter).

    Attributes:
        type: only missions of this handler type.
        error_type: only missions whose last error has this type (``MissionError.type``).
        labels: only missions carrying all these labels.
    """

    type: str
    error_type: str
    labels: Mapping[str, str]


def dead_letter_filter(**filters: Unpack[DeadLetterFilters]) -> pb.DeadLetterFilter:
    """The DeadLetterFilter of ``filters``; ``labels`` become its label selector."""
    return pb.DeadLetterFilter(
        type=filters.get("type", ""),
        error_type=filters.get("error_type", ""),
        label_selector=_selector(filters.get("labels")),
    )


def dead_letters_request(page_size: int, **filters: Unpack[DeadLetterFilters]) -> pb.ListDeadLettersRequest:
    """The ListDeadLettersRequest of the first page of a listing of the dead letters ``filters`` take."""
    given = dead_letter_filter(**filters)
    return pb.ListDeadLettersRequest(
        page_size=page_size, type=given.type, error_type=given.error_type, label_selector=given.label_selector
    )


PageRequest = TypeVar("PageRequest", pb.ListMissionsRequest, pb.ListDeadLettersRequest)


def next_page(request: PageRequest, page_token: str) -> PageRequest:
    """A copy of a listing's ``request`` that asks for the page at ``page_token``: the same filters."""
    following = type(request)()
    following.CopyFrom(request)
    following.page_token = page_token
    return following


def deadline_of(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` at which ``timeout`` seconds from now end."""
    return None if timeout is None else time.monotonic() + timeout


def wait_cursor(mission: mission_pb2.Mission, deadline: float | None) -> WatchCursor:
    """Where waiting for ``mission`` to end goes on: its final events after what it shows already."""
    request = watch_request(mission_ids=[mission.id], types=FINAL_EVENT_TYPES, after_sequence=mission.last_sequence)
    return WatchCursor(request, retries=WATCH_RETRIES, deadline=deadline)


def outcome(mission: mission_pb2.Mission) -> dict[str, Any]:
    """The result of a finished mission as a dict; MissionFailed or MissionCancelled otherwise."""
    if mission.state == mission_pb2.MISSION_STATE_FAILED:
        raise MissionFailed(mission)
    if mission.state == mission_pb2.MISSION_STATE_CANCELLED:
        raise MissionCancelled(mission)
    return result_dict(mission)
