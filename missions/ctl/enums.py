"""Proto enums as missionctl spells them: without the prefix, e.g. ``queued`` or ``QUEUED``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from missions.v1 import events_pb2, mission_pb2, worker_pb2

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

__all__ = [
    "EVENT",
    "PRIORITY",
    "STATE",
    "WORKER_STATE",
    "PrefixedEnum",
    "choices",
    "life_cycle_order",
    "short",
    "value",
]

_V = TypeVar("_V", bound=int)

# An enum with the prefix its value names share.
PrefixedEnum: TypeAlias = tuple[str, "_EnumTypeWrapper[Any]"]

STATE = ("MISSION_STATE_", mission_pb2.MissionState)
PRIORITY = ("PRIORITY_", mission_pb2.Priority)
EVENT = ("EVENT_TYPE_", events_pb2.EventType)
WORKER_STATE = ("WORKER_STATE_", worker_pb2.WorkerState)


# SCHEDULED came to the enum last but comes first in a mission's life.
_LIFE_CYCLE: dict[int, int] = {mission_pb2.MISSION_STATE_SCHEDULED: -1}


def life_cycle_order(state: int) -> int:
    """A sort key that puts mission states in the order a mission goes through them."""
    return _LIFE_CYCLE.get(state, state)


def choices(enum: PrefixedEnum) -> list[str]:
    """The CLI choices for an enum: its names in lower case without the prefix, UNSPECIFIED left out."""
    prefix, wrapper = enum
    return [name.removeprefix(prefix).lower() for name, number in wrapper.items() if number != 0]


def value(enum: tuple[str, _EnumTypeWrapper[_V]], choice: str) -> _V:
    """The proto enum value for a CLI choice."""
    prefix, wrapper = enum
    return wrapper.Value(prefix + choice.upper())


def short(enum: PrefixedEnum, number: int) -> str:
    """The name of ``number`` without the prefix, e.g. ``QUEUED``; the number itself if unknown."""
    prefix, wrapper = enum
    try:
        return wrapper.Name(number).removeprefix(prefix)
    except ValueError:  # a value newer than this client
        return str(number)
