"""Which dead letters a request means: the filter that ListDeadLetters and the bulk
operations (RedriveDeadLetters, PurgeDeadLetters) share, read from the projection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mission_service import paging
from mission_service.labels import parse_label_selector
from mission_service.limits import Limits
from mission_service.store import MissionStore, Page
from missions.v1 import mission_pb2

__all__ = ["DeadLetters"]

# A dead-letter page token carries this state list in its filter digest, so that a token
# of ListMissions never continues a list of dead letters, nor the other way round.
_TOKEN_MARKER = (-1,)


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """Dead-lettered missions of a type, with a last error of a type, carrying labels
    (each filter left empty takes every mission)."""

    mission_type: str = ""
    error_type: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(
        cls, mission_type: str, error_type: str, label_selector: str, limits: Limits, field: str = "label_selector"
    ) -> DeadLetters:
        """The filter of a request; InvalidArgumentError naming ``field`` for a bad selector."""
        return cls(mission_type, error_type, parse_label_selector(label_selector, limits, field))

    def page(self, store: MissionStore, after: int, limit: int) -> Page:
        """Up to ``limit`` of them, oldest first, after the position ``after``."""
        return store.list(
            states=(),
            mission_type=self.mission_type,
            error_type=self.error_type,
            labels=self.labels,
            after_created_sequence=after,
            limit=limit,
            dead_lettered=True,
        )

    def pages(self, store: MissionStore, size: int) -> Iterator[Sequence[mission_pb2.Mission]]:
        """Every one of them, oldest first, ``size`` at a time. Each page is read when the
        previous one has been handled, so a mission redriven or purged meanwhile is not
        met again, nor one dead-lettered again after its redrive (it keeps its place)."""
        after = 0
        while True:
            page = self.page(store, after, size)
            if page.missions:
                yield page.missions
            if not page.more:
                return
            after = page.last_created_sequence

    def decode_page_token(self, token: str) -> int:
        return paging.decode_page_token(token, _TOKEN_MARKER, self.mission_type, self._more())

    def encode_page_token(self, after: int) -> str:
        return paging.encode_page_token(after, _TOKEN_MARKER, self.mission_type, self._more())

    def _more(self) -> paging.Filters:
        # Bound to every filter, so that a page of one list never continues another.
        return {"error_type": self.error_type, "labels": self.labels}
