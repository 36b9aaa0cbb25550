"""``missionctl watch`` on a terminal: a live table with one row per mission, built from its events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from missions.ctl import render
from missions.ctl.enums import STATE, life_cycle_order, short
from missions.events import TERMINAL_STATES, is_final, is_scheduled
from missions.v1 import events_pb2, mission_pb2

__all__ = ["CAPACITY", "MissionBoard", "rows_shown"]

E = events_pb2
M = mission_pb2

# The state each event leaves its mission in (FAILED depends on will_retry).
_STATES = {
    E.EVENT_TYPE_CREATED: M.MISSION_STATE_QUEUED,
    E.EVENT_TYPE_STARTED: M.MISSION_STATE_RUNNING,
    E.EVENT_TYPE_PROGRESS: M.MISSION_STATE_RUNNING,
    E.EVENT_TYPE_COMPLETED: M.MISSION_STATE_SUCCEEDED,
    E.EVENT_TYPE_RETRYING: M.MISSION_STATE_RETRYING,
    E.EVENT_TYPE_CANCELLED: M.MISSION_STATE_CANCELLED,
    E.EVENT_TYPE_DEAD_LETTERED: M.MISSION_STATE_FAILED,
    E.EVENT_TYPE_REDRIVEN: M.MISSION_STATE_QUEUED,
    E.EVENT_TYPE_DUE: M.MISSION_STATE_QUEUED,
}
# A watch of every mission on a busy system must not grow without bound.
CAPACITY = 1000
_BAR_WIDTH = 20
# Below this terminal width there is no room for a bar beside a uuid and a short message.
_ROOM_FOR_BAR = 100


@dataclass(slots=True)
class _Row:
    mission_id: str
    mission_type: str = ""
    state: int = M.MISSION_STATE_UNSPECIFIED
    attempt: int = 0
    max_attempts: int = 0
    progress: float = 0.0
    message: str = ""
    final: bool = False
    # The last event folded in (or the snapshot's): an event at or before it is already shown.
    sequence: int = 0


class MissionBoard:
    """The missions a watch has seen, in the order it first saw them; finished ones stay."""

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self.events = 0

    def seed(self, mission: mission_pb2.Mission) -> None:
        """A row from a mission as the service has it, e.g. one not final yet when the watch starts."""
        row = self._row(mission.id)
        row.mission_type, row.state, row.final = mission.type, mission.state, mission.state in TERMINAL_STATES
        row.attempt, row.max_attempts, row.progress = mission.attempt, mission.max_attempts, mission.progress
        row.message = mission.error.message or mission.progress_message
        row.sequence = mission.last_sequence

    def apply(self, event: events_pb2.MissionEvent) -> None:
        """Fold one event into its mission's row."""
        self.events += 1
        row = self._row(event.mission_id)
        if 0 < event.sequence <= row.sequence:
            return  # the stream replays what a seeded row already shows
        row.sequence = event.sequence
        row.mission_type = event.mission_type or row.mission_type
        row.state = _STATES.get(event.type, row.state)
        row.final = is_final(event)
        row.attempt = event.attempt or row.attempt
        row.message = render.event_details(event)
        match event.WhichOneof("details"):
            case "created":
                if is_scheduled(event.created.mission):
                    row.state = M.MISSION_STATE_SCHEDULED
                row.max_attempts = event.created.mission.max_attempts
                row.mission_type = row.mission_type or event.created.mission.type
            case "redriven":
                row.max_attempts = event.redriven.mission.max_attempts
                row.attempt, row.progress = 0, 0.0
            case "started":
                row.progress = 0.0
            case "progress":
                # The bar shows the fraction; the message column needs only the words.
                row.progress, row.message = event.progress.fraction, event.progress.message
            case "completed":
                row.progress = 1.0
            case "failed":
                row.state = M.MISSION_STATE_RETRYING if event.failed.will_retry else M.MISSION_STATE_FAILED
            case "purged":
                row.final = True  # it comes after the mission's final event

    def _row(self, mission_id: str) -> _Row:
        row = self._rows.get(mission_id)
        if row is None:
            row = self._rows[mission_id] = _Row(mission_id)
            self._forget_one()
        return row

    def _forget_one(self) -> None:
        """Past the limit, drop the oldest finished mission (else the oldest one)."""
        if len(self._rows) <= CAPACITY:
            return
        oldest = next((row.mission_id for row in self._rows.values() if row.final), next(iter(self._rows)))
        del self._rows[oldest]

    def render(self, width: int, height: int) -> RenderableType:
        """The table for a ``width`` x ``height`` terminal: unfinished missions first, then the newest
        finished, as many as fit; the bar narrows (to nothing) before ids would be cut."""
        rows = list(self._rows.values())
        bar = min(_BAR_WIDTH, max(0, width - _ROOM_FOR_BAR))
        shown = _visible(rows, rows_shown(height))
        table = Table(box=None, header_style="bold", expand=False)
        # Every column keeps its width on a narrow terminal but MESSAGE, which ends in "…".
        widths = {
            "ID": max([len("ID"), *(len(row.mission_id) for row in shown)]),
            "TYPE": max([len("TYPE"), *(len(row.mission_type) for row in shown)]),
            "STATE": len("SUCCEEDED"),
            "ATTEMPT": len("ATTEMPT"),
            "PROGRESS": bar + len(" 100%") if bar else len("PROGRESS"),
        }
        for header, width in widths.items():
            table.add_column(header, no_wrap=True, min_width=width)
        # Wrappable, so that rich narrows it first; its cells are cut instead (one line per row).
        table.add_column("MESSAGE")
        for row in shown:
            table.add_row(*_cells(row, bar))
        return Group(table, self._summary(rows, hidden=len(rows) - len(shown)))

    def _summary(self, rows: list[_Row], hidden: int) -> Text:
        counts: dict[int, int] = {}
        for row in rows:
            counts[row.state] = counts.get(row.state, 0) + 1
        summary = Text(f"{len(rows)} missions, {self.events} events", style="dim")
        for state, count in sorted(counts.items(), key=lambda item: life_cycle_order(item[0])):
            name = short(STATE, state) if state else "?"
            summary.append(f" · {count} ")
            summary.append(name, style=render.STYLES.get(name, ""))
        if hidden:
            summary.append(f" · {hidden} not shown (taller terminal, or --plain)", style="dim")
        return summary


def rows_shown(height: int) -> int:
    """How many missions the table shows on a terminal ``height`` lines tall."""
    return max(1, height - 3)  # the header, the summary and the cursor line


def _visible(rows: list[_Row], limit: int) -> list[_Row]:
    if len(rows) <= limit:
        return rows
    # Unfinished missions matter more than finished ones; among each, the newest.
    keep = set(sorted(range(len(rows)), key=lambda index: (not rows[index].final, index))[-limit:])
    return [row for index, row in enumerate(rows) if index in keep]


def _cells(row: _Row, bar: int) -> Iterable[RenderableType]:
    state = short(STATE, row.state) if row.state else "?"
    yield Text(row.mission_id)
    yield Text(row.mission_type)
    yield Text(state, style=render.STYLES.get(state, ""))
    yield f"{row.attempt}/{row.max_attempts}" if row.max_attempts else str(row.attempt or "")
    yield _progress(row.progress, bar)
    yield Text(row.message, no_wrap=True, overflow="ellipsis")


def _progress(fraction: float, bar: int) -> RenderableType:
    percent = f"{fraction:>4.0%}"
    if not bar:
        return percent
    cell = Table.grid(padding=(0, 1))
    cell.add_row(ProgressBar(total=1.0, completed=fraction, width=bar), percent)
    return cell
