"""missionctl's live views rendered to a recording console: the watch table and the top frame."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import struct_pb2
from rich.console import Console, RenderableType

from missions.ctl.board import MissionBoard
from missions.ctl.output import Output
from missions.ctl.top import Rates, Sample, frame_record, frame_view, measure
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from missions.v1 import mission_service_pb2 as pb

pytestmark = pytest.mark.timeout(20)

E = events_pb2
M = mission_pb2


def text_of(renderable: RenderableType, width: int = 160) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def rows_of(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def event(mission_id: str, kind: events_pb2.EventType.ValueType, **fields: Any) -> events_pb2.MissionEvent:
    return events_pb2.MissionEvent(mission_id=mission_id, type=kind, mission_type="resize", **fields)


def created(mission_id: str, max_attempts: int = 3) -> events_pb2.MissionEvent:
    mission = mission_pb2.Mission(id=mission_id, type="resize", max_attempts=max_attempts)
    return event(mission_id, E.EVENT_TYPE_CREATED, created=events_pb2.CreatedEvent(mission=mission))


def test_board_keeps_a_row_per_mission_with_state_attempt_bar_and_message() -> None:
    board = MissionBoard()
    result = struct_pb2.Struct()
    result.update({"ok": True})
    for item in (
        created("m-1"),
        created("m-2", max_attempts=1),
        event("m-1", E.EVENT_TYPE_STARTED, attempt=1, started=events_pb2.StartedEvent(worker_id="w")),
        event("m-1", E.EVENT_TYPE_PROGRESS, attempt=1, progress=events_pb2.ProgressEvent(fraction=0.5, message="half")),
        event("m-2", E.EVENT_TYPE_STARTED, attempt=1),
        event(
            "m-2",
            E.EVENT_TYPE_FAILED,
            attempt=1,
            failed=events_pb2.FailedEvent(error=mission_pb2.MissionError(type="IOError", message="disk")),
        ),
        event(
            "m-2",
            E.EVENT_TYPE_DEAD_LETTERED,
            dead_lettered=events_pb2.DeadLetteredEvent(
                reason="exhausted", last_error=mission_pb2.MissionError(type="IOError", message="disk")
            ),
        ),
    ):
        board.apply(item)

    rows = rows_of(text_of(board.render(width=160, height=40)))
    assert rows[0] == ["ID", "TYPE", "STATE", "ATTEMPT", "PROGRESS", "MESSAGE"]
    assert rows[1][:4] == ["m-1", "resize", "RUNNING", "1/3"]
    assert rows[1][-2:] == ["50%", "half"]
    assert rows[2][:4] == ["m-2", "resize", "FAILED", "1/1"]
    assert rows[2][-3:] == ["exhausted:", "IOError:", "disk"]
    assert rows[3] == ["2", "missions,", "7", "events", "·", "1", "RUNNING", "·", "1", "FAILED"]

    board.apply(event("m-1", E.EVENT_TYPE_COMPLETED, attempt=1, completed=events_pb2.CompletedEvent(result=result)))
    rows = rows_of(text_of(board.render(width=160, height=40)))
    assert rows[1][:4] == ["m-1", "resize", "SUCCEEDED", "1/3"]
    assert "100%" in rows[1] and rows[1][-1] == 'result={"ok":true}'
    assert rows[2][2] == "FAILED"  # finished rows stay


def test_board_shows_retrying_and_a_redrive_resets_the_attempts() -> None:
    board = MissionBoard()
    board.apply(event("m-1", E.EVENT_TYPE_FAILED, attempt=2, failed=events_pb2.FailedEvent(will_retry=True)))
    assert rows_of(text_of(board.render(width=160, height=40)))[1][:4] == ["m-1", "resize", "RETRYING", "2"]
    redriven = events_pb2.RedrivenEvent(mission=mission_pb2.Mission(max_attempts=5), redrive_count=1)
    board.apply(event("m-1", E.EVENT_TYPE_REDRIVEN, redriven=redriven))
    assert rows_of(text_of(board.render(width=160, height=40)))[1][:4] == ["m-1", "resize", "QUEUED", "0/5"]


def test_board_cut_to_the_terminal_keeps_unfinished_missions_and_says_how_many_are_hidden() -> None:
    board = MissionBoard()
    for number in range(10):
        board.apply(created(f"m-{number}"))
    for number in range(8):
        board.apply(event(f"m-{number}", E.EVENT_TYPE_COMPLETED, completed=events_pb2.CompletedEvent()))

    text = text_of(board.render(width=160, height=7))
    # 4 rows fit: the two still queued, then the newest finished ones; in the order first seen.
    assert [row[0] for row in rows_of(text)[1:-1]] == ["m-6", "m-7", "m-8", "m-9"]
    assert "10 missions, 18 events · 2 QUEUED · 8 SUCCEEDED · 6 not shown (taller terminal, or --plain)" in text


def sample(taken: float, *, succeeded: int, events: int, finished: int, session: str = "s1") -> Sample:
    stats = pb.GetStatsResponse(
        states=[
            pb.StateCount(state=M.MISSION_STATE_QUEUED, count=4),
            pb.StateCount(state=M.MISSION_STATE_SUCCEEDED, count=succeeded),
        ],
        queue_depth=4,
        dead_letter_depth=1,
        running=2,
        succeeded_last_hour=succeeded,
        active_workers=1,
        # Sequences are not dense (group commit): rates count events_read, never sequences.
        last_sequence=events * 1000,
        events_read=events,
    )
    worker = worker_pb2.Worker(
        id="w-1",
        host="h",
        pid=9,
        state=worker_pb2.WORKER_STATE_ACTIVE,
        running=2,
        concurrency=4,
        finished=finished,
        session=session,
        handler_types=["resize"],
    )
    return Sample(taken, datetime(2026, 1, 1, 12, 0, tzinfo=UTC), stats, pb.ListWorkersResponse(workers=[worker]))


def test_rates_are_the_change_per_second_between_two_samples() -> None:
    first = sample(100.0, succeeded=10, events=50, finished=10)
    second = sample(110.0, succeeded=30, events=150, finished=40)

    assert measure(None, first) == Rates()
    rates = measure(first, second)
    assert (rates.events, rates.submitted, rates.succeeded, rates.failed) == (10.0, 2.0, 2.0, 0.0)
    assert rates.workers == {"w-1": 3.0}
    restarted = sample(110.0, succeeded=30, events=150, finished=1, session="s2")
    assert measure(first, restarted).workers == {}  # a new session's count starts again
    pruned = sample(110.0, succeeded=5, events=150, finished=40)
    assert measure(first, pruned).succeeded == 0.0  # never negative


def test_top_frame_shows_states_queues_rates_and_workers() -> None:
    first = sample(100.0, succeeded=10, events=50, finished=10)
    second = sample(110.0, succeeded=30, events=150, finished=40)

    rows = rows_of(text_of(frame_view(second, measure(first, second), interval=2)))
    assert rows[0][:4] == ["missionctl", "top", "every", "2s"]
    assert " ".join(rows[1]) == ("missions SCHEDULED 0 QUEUED 4 RUNNING 0 RETRYING 0 SUCCEEDED 30 FAILED 0 CANCELLED 0")
    assert " ".join(rows[2]) == "queues depth 4 dead letters 1 running 2 workers 1 active"
    assert " ".join(rows[3]).startswith("rates 10.0/s events 2.0/s submitted 2.0/s succeeded 0.0/s failed")
    assert rows[4][:7] == ["ID", "HOST", "PID", "STATE", "RUNNING", "FINISHED", "RATE"]
    assert rows[5][:7] == ["w-1", "h", "9", "ACTIVE", "2/4", "40", "3.0/s"]
    first_frame = rows_of(text_of(frame_view(first, measure(None, first), interval=2)))
    assert first_frame[3][:3] == ["rates", "-", "events"] and first_frame[5][6] == "-"


def test_top_frame_names_the_types_no_live_worker_handles() -> None:
    current = sample(100.0, succeeded=10, events=50, finished=10)
    current.stats.mission_types.extend(
        [
            pb.MissionTypeStats(mission_type="resize", waiting=3, queue_depth=3, active_workers=1),
            *(pb.MissionTypeStats(mission_type=f"t{n}", waiting=n + 1, queue_depth=n + 1) for n in range(5)),
            pb.MissionTypeStats(mission_type="idle", active_workers=1),
        ]
    )

    rows = rows_of(text_of(frame_view(current, measure(None, current), interval=2)))
    assert rows[3][0] == "rates"
    assert " ".join(rows[4]) == ("no worker t0 (1 waiting), t1 (2 waiting), t2 (3 waiting), t3 (4 waiting), 1 more")
    assert rows[5][:2] == ["ID", "HOST"]
    served = sample(100.0, succeeded=10, events=50, finished=10)
    served.stats.mission_types.append(pb.MissionTypeStats(mission_type="resize", waiting=3, active_workers=1))
    assert "no worker" not in text_of(frame_view(served, measure(None, served), interval=2))


def test_top_record_holds_the_responses_and_null_rates_on_the_first_frame() -> None:
    first = sample(100.0, succeeded=10, events=50, finished=10)
    record = frame_record(first, measure(None, first))

    assert record["time"] == "2026-01-01T12:00:00.000Z"
    assert record["stats"]["queue_depth"] == "4"  # proto JSON: int64 as a string
    assert record["workers"][0]["id"] == "w-1"
    assert record["rates"] == {
        "events_per_s": None,
        "submitted_per_s": None,
        "succeeded_per_s": None,
        "failed_per_s": None,
        "worker_attempts_per_s": {},
    }


@pytest.mark.parametrize(
    ("color", "variables", "coloured"),
    [("auto", {}, False), ("never", {}, False), ("always", {}, True), ("always", {"NO_COLOR": "1"}, True)],
)
def test_colour_only_on_a_terminal_or_when_asked(
    color: str, variables: dict[str, str], coloured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    console = Output(color=color).console
    with console.capture() as captured:
        console.print("[red]FAILED[/red]")
    assert ("\x1b[" in captured.get()) is coloured
    assert not Output(color=color).live  # a pipe is never live, whatever the colour


def test_no_color_on_a_terminal_keeps_the_text_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    output = Output()
    with output.console.capture() as captured:
        output.console.print("[red]FAILED[/red]")
    assert output.live
    assert "\x1b[31m" not in captured.get()


@pytest.mark.parametrize("width", [80, 105, 160])
def test_board_on_a_narrow_terminal_keeps_ids_and_states_whole(width: int) -> None:
    board = MissionBoard()
    mission_id = "5b1c0a52-6a55-4d7c-9a43-0f1e6fb0d6a1"
    board.apply(event(mission_id, E.EVENT_TYPE_PROGRESS, attempt=1, progress=events_pb2.ProgressEvent(fraction=0.4)))

    header, row, _ = rows_of(text_of(board.render(width=width, height=20), width=width))

    assert header[:5] == ["ID", "TYPE", "STATE", "ATTEMPT", "PROGRESS"]
    assert row[:4] == [mission_id, "resize", "RUNNING", "1"] and "40%" in row
