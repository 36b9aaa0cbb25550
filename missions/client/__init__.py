"""The Python client of MissionService: ``Client`` (synchronous) and ``AsyncClient`` (asyncio).

Both have the same methods and settings (argument, else ``MISSIONS_*``, else the missionctl
config file), own their channel and are context managers. They return the protobuf
messages; ``payload_dict`` and ``result_dict`` read a mission's payload and result as dicts,
and ``result()`` returns the result as one. A failed call raises the
``missions.errors.ServiceError`` subclass of its status. docs/clients.md is the guide.
"""

from missions.client._async import AsyncClient
from missions.client._errors import DeadlineExceededError, MissionCancelled, MissionFailed, status_code
from missions.client._messages import (
    WATCH_RETRIES,
    DeadLetterFilters,
    ListFilters,
    ScheduleOptions,
    SubmitOptions,
    WatchFilters,
    schedule_request,
    submit_request,
)
from missions.client._payloads import payload_dict, result_dict
from missions.client._settings import ClientSettings
from missions.client._sync import Client

__all__ = [
    "WATCH_RETRIES",
    "AsyncClient",
    "Client",
    "ClientSettings",
    "DeadLetterFilters",
    "DeadlineExceededError",
    "ListFilters",
    "MissionCancelled",
    "MissionFailed",
    "ScheduleOptions",
    "SubmitOptions",
    "WatchFilters",
    "payload_dict",
    "result_dict",
    "schedule_request",
    "status_code",
    "submit_request",
]
