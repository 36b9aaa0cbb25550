"""What both clients send and how they read the answers: request builders and response readers.

Client and AsyncClient differ only in how they call; each of their methods is a builder
from here, one call, and a reader from here.
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeAlias, TypeVar

from missions import errors
from missions.client._connection import Connection
from missions.client._errors import MissionCancelled, MissionFailed, from_submit_error
from missions.client._payloads import result_dict, struct_from
from missions.client._settings import ClientSettings
from missions.client._watch import WatchCursor
from missions.events import FINAL_EVENT_TYPES
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2_grpc
from missions.v1 import mission_service_pb2 as pb

__all__ = [
    "WATCH_RETRIES",
    "ClientBase",
    "Priority",
    "State",
    "batch_results",
    "deadline_of",
    "outcome",
    "submit_request",
    "wait_cursor",
    "watch_request",
]

Priority: TypeAlias = mission_pb2.Priority.ValueType | str
"""A priority: ``mission_pb2.PRIORITY_HIGH`` or its short name, ``"high"``."""
State: TypeAlias = mission_pb2.MissionState.ValueType

WATCH_RETRIES = 10
"""Failed attempts in a row after which ``watch`` gives up (about 30 s of backoff)."""


PathArg: TypeAlias = str | os.PathLike[str]
InterceptorT = TypeVar("InterceptorT")


class ClientBase(Generic[InterceptorT]):
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
    ) -> None:
        paths = {"tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key, "token_file": token_file}
        given: dict[str, Any] = {name: None if path is None else pathlib.Path(path) for name, path in paths.items()}
        given |= {"server": server, "timeout": timeout, "tls": tls, "token": token}
        self.settings = ClientSettings.resolve(given, config=config, profile=profile)
        connection = Connection.from_settings(self.settings)
        self._metadata = tuple(connection.metadata)
        self._channel = self._open(connection, interceptors)
        self._stub = mission_service_pb2_grpc.MissionServiceStub(self._channel)

    def _open(self, connection: Connection, interceptors: Sequence[InterceptorT]) -> Any:
        raise NotImplementedError

    def _timeout(self, deadline: float | None) -> float:
        """A unary call's deadline: the settings' timeout, shortened to what is left of ``deadline``."""
        if deadline is None:
            return self.settings.timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        return min(self.settings.timeout, left)


def _priority(priority: Priority | None) -> mission_pb2.Priority.ValueType:
    if priority is None:
        return mission_pb2.PRIORITY_UNSPECIFIED
    if isinstance(priority, str):
        return mission_pb2.Priority.Value(f"PRIORITY_{priority.upper()}")
    return priority


def submit_request(
    type: str,
    payload: dict[str, Any] | None = None,
    *,
    priority: Priority | None = None,
    labels: Mapping[str, str] | None = None,
    idempotency_key: str = "",
    max_attempts: int = 0,
    timeout: float | timedelta | None = None,
) -> pb.SubmitMissionRequest:
    """A SubmitMissionRequest; ``timeout`` is one attempt's, in seconds or as a timedelta."""
    request = pb.SubmitMissionRequest(
        type=type,
        payload=struct_from(payload),
        priority=_priority(priority),
        labels=dict(labels or {}),
        idempotency_key=idempotency_key,
        max_attempts=max_attempts,
    )
    if timeout is not None:
        request.timeout.FromTimedelta(timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout))
    return request


def batch_results(response: pb.SubmitMissionsResponse) -> list[mission_pb2.Mission | errors.ServiceError]:
    """Each mission of a batch, or the exception SubmitMission would have raised for it."""
    return [
        result.mission if result.HasField("mission") else from_submit_error(result.error) for result in response.results
    ]


def watch_request(
    *,
    mission_ids: Iterable[str] = (),
    types: Iterable[events_pb2.EventType.ValueType] = (),
    mission_types: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
    after_sequence: int | None = None,
) -> pb.WatchEventsRequest:
    """A WatchEventsRequest; ``labels`` become its label selector."""
    request = pb.WatchEventsRequest(
        mission_ids=mission_ids,
        types=types,
        mission_types=mission_types,
        label_selector=",".join(f"{key}={value}" for key, value in (labels or {}).items()),
    )
    if after_sequence is not None:
        request.after_sequence = after_sequence
    return request


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
