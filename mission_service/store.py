"""The SQLite read model: missions and schedules by id plus the log position they reflect.

One writer (the log follower) applies batches of events; each batch and the new
checkpoint commit in one transaction, so after a crash the follower resumes exactly
after the last committed event. Events that repeat what the log already holds
(projection.is_duplicate) change no mission: their sequences are kept in a table of
their own, so that no reader of the log ever sees them.
"""

from __future__ import annotations

import logging
import pathlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from mission_service import schedule_projection
from mission_service.projection import apply, is_duplicate
from missions.events import is_final, is_schedule_event
from missions.v1 import events_pb2, mission_pb2, schedule_pb2

__all__ = ["Bounds", "MissionStore", "Page", "SchedulePage"]

log = logging.getLogger(__name__)

# Bump when the tables or the sequences in them change (4: sequences of group commit; 5:
# a STARTED of a mission already over is a duplicate; 6: create_time and the labels table,
# for ListMissions' filters; 7: error_type, for ListDeadLetters' filter, and PURGED; 8:
# due_time and SCHEDULED, for delayed missions; 9: schedules): an older file is dropped and
# rebuilt from the log.
SCHEMA_VERSION = 9

# FAILED for good without DEAD_LETTERED: only between a worker's two publishes, or for
# good if the worker died in between (the Reaper finishes those). A purged dead letter is
# FAILED and not dead-lettered too, but has had its final event. A partial index finds
# them without reading every failed mission.
_STRANDED = f"state = {int(mission_pb2.MISSION_STATE_FAILED)} AND dead_lettered = 0 AND final_sequence IS NULL"

# Missions waiting for a worker. GetStats counts them per type on every call (missionctl top
# polls it): a partial index answers from the index alone, already grouped by type (with
# state in it, as SQLite still checks the index's own WHERE on each entry).
_WAITING = f"state IN ({int(mission_pb2.MISSION_STATE_QUEUED)}, {int(mission_pb2.MISSION_STATE_RETRYING)})"

# Missions waiting for their due time: the scheduler asks for the earliest every fraction of
# a second, which a partial index on the due time answers without reading the rest.
_SCHEDULED = f"state = {int(mission_pb2.MISSION_STATE_SCHEDULED)}"

# Schedules that fire: the leader asks for the earliest every fraction of a second too.
_SCHEDULE_DUE = "deleted = 0 AND next_fire_time IS NOT NULL"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS missions (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    state INTEGER NOT NULL,
    created_sequence INTEGER NOT NULL,
    final_sequence INTEGER,
    create_time REAL,
    end_time REAL,
    dead_lettered INTEGER NOT NULL DEFAULT 0,
    error_type TEXT,
    due_time REAL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS missions_by_created ON missions (created_sequence);
CREATE INDEX IF NOT EXISTS missions_by_state ON missions (state, created_sequence);
CREATE INDEX IF NOT EXISTS missions_by_type ON missions (type, created_sequence);
CREATE INDEX IF NOT EXISTS missions_by_end ON missions (state, end_time);
CREATE INDEX IF NOT EXISTS missions_dead ON missions (dead_lettered, created_sequence);
CREATE INDEX IF NOT EXISTS missions_stranded ON missions (created_sequence) WHERE {_STRANDED};
CREATE INDEX IF NOT EXISTS missions_waiting ON missions (type, state) WHERE {_WAITING};
CREATE INDEX IF NOT EXISTS missions_scheduled ON missions (due_time) WHERE {_SCHEDULED};
-- A mission's labels, set once at creation: ListMissions' label selector looks them up.
CREATE TABLE IF NOT EXISTS labels (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    mission_id TEXT NOT NULL,
    PRIMARY KEY (key, value, mission_id)
) WITHOUT ROWID;
-- Recurring schedules. A deleted one keeps its row (and so its id, never reused: the
-- idempotency keys of its missions name it), out of every answer.
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    created_sequence INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    next_fire_time REAL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_by_created ON schedules (created_sequence) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_fire_time) WHERE {_SCHEDULE_DUE};
CREATE TABLE IF NOT EXISTS duplicates (
    sequence INTEGER PRIMARY KEY,
    mission_id TEXT NOT NULL, -- or the schedule id of a schedule's event
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS duplicates_by_mission ON duplicates (mission_id);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sequence INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class SchedulePage:
    """One page of ListSchedules; ``last_created_sequence`` positions the next page."""

    schedules: list[schedule_pb2.Schedule]
    last_created_sequence: int
    more: bool


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ListMissions; ``last_created_sequence`` positions the next page."""

    missions: list[mission_pb2.Mission]
    last_created_sequence: int
    more: bool


# [at or after, before) in epoch seconds; None leaves that side open.
Bounds = tuple[float | None, float | None]
_UNBOUNDED: Bounds = (None, None)

# Above every log position (SQLite's largest INTEGER): where a list of the newest first starts.
_PAST_SEQUENCE = 2**63 - 1

# Above every character of a mission id: the end of the id range a prefix spans.
_PAST_ID = "\U0010ffff"


def _within(column: str, bounds: Bounds, clauses: list[str], args: list[object]) -> None:
    low, high = bounds
    if low is not None:
        clauses.append(f"{column} >= ?")
        args.append(low)
    if high is not None:
        clauses.append(f"{column} < ?")
        args.append(high)


# Hears a STARTED event and whether its worker runs the attempt.
Verdict = Callable[[events_pb2.MissionEvent, bool], None]


def _runs(mission: mission_pb2.Mission | None, started: events_pb2.MissionEvent) -> bool:
    """Whether ``mission`` runs ``started``'s attempt on ``started``'s worker session."""
    return (
        mission is not None
        and mission.state == mission_pb2.MISSION_STATE_RUNNING
        and mission.redrive_count == started.generation
        and mission.attempt == started.attempt
        and mission.worker_session == started.started.worker_session
    )


def _seconds(message: Message, field: str) -> float | None:
    """A timestamp of a mission or schedule in epoch seconds, None when unset."""
    return getattr(message, field).ToNanoseconds() / 1e9 if message.HasField(field) else None


def _decode(body: bytes) -> mission_pb2.Mission:
    return mission_pb2.Mission.FromString(body)


class MissionStore:
    """Missions projected from the log, in one SQLite file per namespace."""

    def __init__(self, path: pathlib.Path | str) -> None:
        if str(path) != ":memory:":
            pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        # WAL + NORMAL: commits do not fsync; a power loss may lose the last batches,
        # which the follower then re-reads from the log (the checkpoint rolls back too).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            if version:
                log.warning("read model schema %d is not %d: rebuilding it from the log", version, SCHEMA_VERSION)
            self._db.executescript(
                "DROP TABLE IF EXISTS missions; DROP TABLE IF EXISTS labels; DROP TABLE IF EXISTS duplicates;"
                " DROP TABLE IF EXISTS checkpoint; DROP TABLE IF EXISTS schedules;"
            )
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def __enter__(self) -> MissionStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def checkpoint(self) -> int:
        """Sequence of the last event applied (0 for an empty store)."""
        row = self._db.execute("SELECT sequence FROM checkpoint WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def get(self, mission_id: str) -> mission_pb2.Mission | None:
        row = self._db.execute("SELECT body FROM missions WHERE id = ?", (mission_id,)).fetchone()
        return _decode(row[0]) if row else None

    def positions(self, mission_ids: Iterable[str]) -> dict[str, tuple[int, int | None]]:
        """(created_sequence, final_sequence) of each known id; unknown ids are absent."""
        ids = list(dict.fromkeys(mission_ids))
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(f"SELECT id, created_sequence, final_sequence FROM missions WHERE id IN ({marks})", ids)
        return {row[0]: (int(row[1]), row[2]) for row in rows}

    def counts_by_state(self) -> dict[mission_pb2.MissionState.ValueType, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM missions GROUP BY state")
        return {mission_pb2.MissionState.ValueType(state): int(count) for state, count in rows}

    def waiting_by_type(self) -> dict[str, int]:
        """Missions QUEUED or RETRYING per type; types with none are absent."""
        rows = self._db.execute(
            f"SELECT type, COUNT(*) FROM missions INDEXED BY missions_waiting WHERE {_WAITING} GROUP BY type"
        )
        return {str(mission_type): int(count) for mission_type, count in rows}

    def ended_since(self, state: int, since: float) -> int:
        """Missions in ``state`` whose end_time (epoch seconds) is at or after ``since``."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM missions WHERE state = ? AND end_time >= ?", (state, since)
        ).fetchone()
        return int(row[0])

    def count_dead_letters(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM missions WHERE dead_lettered = 1").fetchone()
        return int(row[0])

    def list(
        self,
        *,
        states: Sequence[int],
        mission_type: str,
        after_created_sequence: int,
        limit: int,
        dead_lettered: bool = False,
        error_type: str = "",
        labels: Sequence[tuple[str, str]] = (),
        id_prefix: str = "",
        create_time: Bounds = _UNBOUNDED,
        end_time: Bounds = _UNBOUNDED,
        newest_first: bool = False,
    ) -> Page:
        """Up to ``limit`` missions past ``after_created_sequence`` (0: from the start), oldest
        first or with ``newest_first`` newest first, that match every filter given: ``labels``
        all carried, an id starting with ``id_prefix``, an error of ``error_type``, and create
        and end times within their bounds (a missing end time is outside any)."""
        start = _PAST_SEQUENCE if newest_first else 0
        clauses = [f"created_sequence {'<' if newest_first else '>'} ?"]
        args: list[object] = [after_created_sequence or start]
        if dead_lettered:
            clauses.append("dead_lettered = 1")
        if states:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if mission_type:
            clauses.append("type = ?")
            args.append(mission_type)
        if error_type:
            clauses.append("error_type = ?")
            args.append(error_type)
        if id_prefix:
            # A range rather than LIKE: it uses the primary key, with no wildcard to escape.
            clauses.append("id >= ? AND id < ?")
            args.extend((id_prefix, id_prefix + _PAST_ID))
        for key, value in labels:
            clauses.append("id IN (SELECT mission_id FROM labels WHERE key = ? AND value = ?)")
            args.extend((key, value))
        _within("create_time", create_time, clauses, args)
        _within("end_time", end_time, clauses, args)
        rows = self._db.execute(
            f"SELECT created_sequence, body FROM missions WHERE {' AND '.join(clauses)}"
            f" ORDER BY created_sequence {'DESC' if newest_first else 'ASC'} LIMIT ?",
            [*args, limit + 1],
        ).fetchall()
        page = rows[:limit]
        return Page(
            missions=[_decode(row[1]) for row in page],
            last_created_sequence=int(page[-1][0]) if page else after_created_sequence,
            more=len(rows) > limit,
        )

    def stranded(self, limit: int) -> Sequence[mission_pb2.Mission]:
        """Missions FAILED for good whose DEAD_LETTERED the log does not hold (yet), oldest first."""
        rows = self._db.execute(
            f"SELECT body FROM missions INDEXED BY missions_stranded WHERE {_STRANDED}"
            " ORDER BY created_sequence LIMIT ?",
            (limit,),
        )
        return [_decode(row[0]) for row in rows]

    def due(self, at: float, limit: int) -> Sequence[mission_pb2.Mission]:
        """SCHEDULED missions due at or before ``at`` (epoch seconds), the earliest due first."""
        rows = self._db.execute(
            f"SELECT body FROM missions INDEXED BY missions_scheduled WHERE {_SCHEDULED} AND due_time <= ?"
            " ORDER BY due_time LIMIT ?",
            (at, limit),
        )
        return [_decode(row[0]) for row in rows]

    def next_due(self, after: float) -> float | None:
        """The earliest due time (epoch seconds) after ``after`` of a SCHEDULED mission; None when none waits."""
        row = self._db.execute(
            f"SELECT MIN(due_time) FROM missions INDEXED BY missions_scheduled WHERE {_SCHEDULED} AND due_time > ?",
            (after,),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def get_schedule(self, schedule_id: str) -> schedule_pb2.Schedule | None:
        """The schedule, None when unknown or deleted."""
        row = self._db.execute("SELECT body FROM schedules WHERE id = ? AND deleted = 0", (schedule_id,)).fetchone()
        return schedule_pb2.Schedule.FromString(row[0]) if row else None

    def schedule_id_taken(self, schedule_id: str) -> bool:
        """Whether a schedule, deleted or not, has this id."""
        return self._db.execute("SELECT 1 FROM schedules WHERE id = ?", (schedule_id,)).fetchone() is not None

    def list_schedules(self, after_created_sequence: int, limit: int) -> SchedulePage:
        """Up to ``limit`` schedules not deleted, created after ``after_created_sequence``, oldest first."""
        rows = self._db.execute(
            "SELECT created_sequence, body FROM schedules INDEXED BY schedules_by_created"
            " WHERE deleted = 0 AND created_sequence > ? ORDER BY created_sequence LIMIT ?",
            (after_created_sequence, limit + 1),
        ).fetchall()
        page = rows[:limit]
        return SchedulePage(
            schedules=[schedule_pb2.Schedule.FromString(row[1]) for row in page],
            last_created_sequence=int(page[-1][0]) if page else after_created_sequence,
            more=len(rows) > limit,
        )

    def schedules_due(self, at: float, limit: int) -> Sequence[schedule_pb2.Schedule]:
        """Schedules whose next firing time is at or before ``at`` (epoch seconds), the earliest first."""
        rows = self._db.execute(
            f"SELECT body FROM schedules INDEXED BY schedules_due WHERE {_SCHEDULE_DUE} AND next_fire_time <= ?"
            " ORDER BY next_fire_time LIMIT ?",
            (at, limit),
        )
        return [schedule_pb2.Schedule.FromString(row[0]) for row in rows]

    def next_schedule_due(self, after: float) -> float | None:
        """The earliest next firing time (epoch seconds) after ``after``; None when no schedule fires."""
        row = self._db.execute(
            f"SELECT MIN(next_fire_time) FROM schedules INDEXED BY schedules_due"
            f" WHERE {_SCHEDULE_DUE} AND next_fire_time > ?",
            (after,),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def duplicates_after(self, sequence: int) -> set[int]:
        """Sequences after ``sequence`` of the events recorded as duplicates (rare: a few per race)."""
        rows = self._db.execute("SELECT sequence FROM duplicates WHERE sequence > ?", (sequence,))
        return {int(row[0]) for row in rows}

    def starters(self, mission: mission_pb2.Mission) -> Sequence[tuple[str, str]]:
        """(worker id, session) of every worker that started ``mission``'s current attempt and
        did not withdraw, the one the mission shows first. More than one only while copies of
        one work message raced, until the workers the log put second withdraw. (Logs of
        earlier versions, whose workers decided by the control stream's order, may have
        the log's first STARTED withdrawn: then the mission shows the next.)"""
        rows = self._db.execute("SELECT body FROM duplicates WHERE mission_id = ? ORDER BY sequence", (mission.id,))
        current = [
            event
            for event in (events_pb2.MissionEvent.FromString(body) for (body,) in rows)
            if event.type == events_pb2.EVENT_TYPE_STARTED
            and event.generation == mission.redrive_count
            and event.attempt == mission.attempt
        ]
        withdrawn = {event.started.worker_session for event in current if event.started.withdrawn}
        found = [(mission.worker_id, mission.worker_session)] if mission.worker_session else []
        found += [(event.started.worker_id, event.started.worker_session) for event in current]
        return [starter for starter in dict.fromkeys(found) if starter[1] not in withdrawn]

    def apply_batch(self, events: Sequence[events_pb2.MissionEvent], on_start: Verdict | None = None) -> set[int]:
        """Apply events in order and advance the checkpoint, atomically; the sequences of
        those recorded as duplicates.

        ``on_start`` hears, for each STARTED that is not a withdrawal, whether its worker
        runs the attempt: whether, once the event is applied, the mission is RUNNING that
        attempt on that worker's session. Only the log before the event decides that, so
        every replica gives each STARTED the same answer.
        """
        duplicates: set[int] = set()
        if not events:
            return duplicates
        with self._db:
            self._db.execute("BEGIN")
            for event in events:
                took_effect, mission = self._apply(event)
                if not took_effect:
                    duplicates.add(event.sequence)
                if on_start is not None and event.type == events_pb2.EVENT_TYPE_STARTED and not event.started.withdrawn:
                    on_start(event, _runs(mission, event))
            self._db.execute(
                "INSERT INTO checkpoint (id, sequence) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET sequence = excluded.sequence",
                (events[-1].sequence,),
            )
        return duplicates

    def _apply(self, event: events_pb2.MissionEvent) -> tuple[bool, mission_pb2.Mission | None]:
        """Project one event: False when it is a duplicate (recorded, nothing else changes),
        and the mission as the event leaves it (None if it names no mission known)."""
        if is_schedule_event(event):
            return self._apply_schedule(event), None
        row = self._db.execute(
            "SELECT body, created_sequence, final_sequence FROM missions WHERE id = ?", (event.mission_id,)
        ).fetchone()
        current = _decode(row[0]) if row else None
        if is_duplicate(current, event):
            self._record_duplicate(event, event.mission_id)
            if current is not None and event.type == events_pb2.EVENT_TYPE_STARTED:
                self._show_runner(current)
            return False, current
        mission = apply(current, event)
        if mission is not None:
            created = int(row[1]) if row else event.sequence
            if row is None:
                self._db.executemany(
                    "INSERT OR IGNORE INTO labels (key, value, mission_id) VALUES (?, ?, ?)",
                    [(key, value, mission.id) for key, value in mission.labels.items()],
                )
            self._put(mission, created=created, final=row[2] if row else None, event=event)
        return True, mission

    def _apply_schedule(self, event: events_pb2.MissionEvent) -> bool:
        """Project one event of a schedule; False when it is a duplicate (recorded only)."""
        row = self._db.execute(
            "SELECT body, created_sequence, deleted FROM schedules WHERE id = ?", (event.schedule_id,)
        ).fetchone()
        current = schedule_pb2.Schedule.FromString(row[0]) if row else None
        if schedule_projection.is_duplicate(current, bool(row and row[2]), event):
            self._record_duplicate(event, event.schedule_id)
            return False
        schedule = schedule_projection.apply(current, event)
        self._db.execute(
            "INSERT OR REPLACE INTO schedules (id, created_sequence, deleted, next_fire_time, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                schedule.id,
                int(row[1]) if row else event.sequence,
                int(event.type == events_pb2.EVENT_TYPE_SCHEDULE_DELETED),
                _seconds(schedule, "next_fire_time"),
                schedule.SerializeToString(),
            ),
        )
        return True

    def _record_duplicate(self, event: events_pb2.MissionEvent, owner: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO duplicates (sequence, mission_id, body) VALUES (?, ?, ?)",
            (event.sequence, owner, event.SerializeToString()),
        )

    def _show_runner(self, mission: mission_pb2.Mission) -> None:
        """Show the worker that runs the current attempt: after a withdrawal, the first of
        the STARTED that remain."""
        starters = self.starters(mission)
        if starters and starters[0] != (mission.worker_id, mission.worker_session):
            mission.worker_id, mission.worker_session = starters[0]
            self._db.execute("UPDATE missions SET body = ? WHERE id = ?", (mission.SerializeToString(), mission.id))

    def _put(
        self, mission: mission_pb2.Mission, *, created: int, final: int | None, event: events_pb2.MissionEvent
    ) -> None:
        if final is None and is_final(event):
            final = event.sequence
        if event.type == events_pb2.EVENT_TYPE_REDRIVEN:
            final = None  # a new generation: its own final event will end watches
        self._db.execute(
            "INSERT OR REPLACE INTO missions"
            " (id, type, state, created_sequence, final_sequence, create_time, end_time, dead_lettered, error_type,"
            " due_time, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                mission.id,
                mission.type,
                mission.state,
                created,
                final,
                _seconds(mission, "create_time"),
                _seconds(mission, "end_time"),
                int(mission.dead_lettered),
                mission.error.type or None,
                _seconds(mission, "due_time"),
                mission.SerializeToString(),
            ),
        )
