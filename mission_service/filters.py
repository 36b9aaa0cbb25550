"""WatchEvents filters: what a subscriber wants, and the keys the hub indexes it by."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from missions.events import is_schedule_event
from missions.v1 import events_pb2

__all__ = ["EventFilter", "IndexKey", "LabelLookup", "event_keys"]

# The labels of a mission, by id (missions never change their labels).
LabelLookup = Callable[[str], Mapping[str, str]]
# ("mission", id) | ("mission_type", name) | ("type", number) | ("all", None)
IndexKey = tuple[str, object]

_ALL: IndexKey = ("all", None)


def event_keys(event: events_pb2.MissionEvent) -> tuple[IndexKey, ...]:
    """The index keys under which subscribers that may want ``event`` are found."""
    return (("mission", event.mission_id), ("mission_type", event.mission_type), ("type", event.type), _ALL)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants; the parts combine with AND, empty parts match all.

    Attributes:
        mission_ids: only events of these missions.
        types: only events of these EventType values.
        mission_types: only events of missions of these handler types.
        labels: only events of missions carrying every one of these (key, value) labels.
        labels_of: how to find a mission's labels; needed when ``labels`` is set.
    """

    mission_ids: frozenset[str] = frozenset()
    types: frozenset[int] = frozenset()
    mission_types: frozenset[str] = frozenset()
    labels: tuple[tuple[str, str], ...] = ()
    labels_of: LabelLookup | None = field(default=None, compare=False)

    def wants_mission(self, event: events_pb2.MissionEvent) -> bool:
        return not self.mission_ids or event.mission_id in self.mission_ids

    def matches(self, event: events_pb2.MissionEvent) -> bool:
        if not self.wants_mission(event):
            return False
        if self.types and event.type not in self.types:
            return False
        if is_schedule_event(event) and not self.types:
            return False  # only for those who ask by type: clients built before schedules cannot read them
        if self.mission_types and event.mission_type not in self.mission_types:
            return False
        if self.labels:
            have = self.labels_of(event.mission_id) if self.labels_of is not None else {}
            return all(have.get(key) == value for key, value in self.labels)
        return True

    def admits(self, event: events_pb2.MissionEvent) -> bool:
        """What the hub hands this subscriber: every event of its watched missions (their
        final events end the stream even when the other parts filter them out), or else
        only what matches."""
        return self.wants_mission(event) if self.mission_ids else self.matches(event)

    def index_keys(self) -> tuple[IndexKey, ...]:
        """The keys of this filter's most selective part, for the hub's index."""
        if self.mission_ids:
            return tuple(("mission", mission_id) for mission_id in self.mission_ids)
        if self.mission_types:
            return tuple(("mission_type", name) for name in self.mission_types)
        if self.types:
            return tuple(("type", number) for number in self.types)
        return (_ALL,)
