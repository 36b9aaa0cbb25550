"""missionctl against a grpc_testing channel: the client runs in a thread, the test plays the server."""

from __future__ import annotations

import io
import json
import pathlib
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc_testing
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from missions import ctl
from missions.client import Client
from missions.client import _sync as sync_client
from missions.client._settings import OPTIONS
from missions.ctl import top as top_module
from missions.ctl.parser import build_parser
from missions.metadata import CORRELATION_KEY
from missions.v1 import events_pb2, mission_pb2, worker_pb2
from missions.v1 import mission_service_pb2 as pb

pytestmark = pytest.mark.timeout(20)

SERVICE = pb.DESCRIPTOR.services_by_name["MissionService"]
OK = grpc.StatusCode.OK
MISSION_ID = "5b1c0a52-6a55-4d7c-9a43-0f1e6fb0d6a1"

Run = Callable[..., "Future[int]"]


def method(name: str) -> Any:
    return SERVICE.methods_by_name[name]


def mission(
    state: mission_pb2.MissionState.ValueType = mission_pb2.MISSION_STATE_QUEUED, **fields: Any
) -> mission_pb2.Mission:
    fields.setdefault("id", MISSION_ID)
    fields.setdefault("type", "echo")
    fields.setdefault("priority", mission_pb2.PRIORITY_NORMAL)
    fields.setdefault("max_attempts", 3)
    return mission_pb2.Mission(state=state, **fields)


def event(sequence: int, **fields: Any) -> pb.WatchEventsResponse:
    time = timestamp_pb2.Timestamp(seconds=1_767_225_600 + sequence)
    return pb.WatchEventsResponse(
        event=events_pb2.MissionEvent(id=f"e{sequence}", sequence=sequence, mission_id=MISSION_ID, time=time, **fields)
    )


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    """No config file and no MISSIONS_* client variable from the machine running the tests."""
    for option in OPTIONS:
        monkeypatch.delenv(option.variable, raising=False)
    for name in ("MISSIONS_CONFIG", "MISSIONS_PROFILE", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


@pytest.fixture
def channel() -> Any:
    return grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())


@pytest.fixture
def servers() -> list[str]:
    """The addresses missionctl connected to."""
    return []


@pytest.fixture
def run(channel: Any, servers: list[str]) -> Iterator[Run]:
    """Start ``missionctl ARGV...`` in a thread against the testing channel."""

    def connect(server: str) -> Any:
        servers.append(server)
        return channel

    with ThreadPoolExecutor(max_workers=1) as pool:
        yield lambda *argv: pool.submit(ctl.main, list(argv), connect=connect)


def answer(channel: Any, name: str, response: Any, code: grpc.StatusCode = OK, details: str = "") -> Any:
    """Take the next call of unary method ``name``, reply, and return (metadata, request)."""
    metadata, request, rpc = channel.take_unary_unary(method(name))
    rpc.terminate(response, (), code, details)
    return metadata, request


def stream(
    channel: Any,
    responses: list[pb.WatchEventsResponse],
    code: grpc.StatusCode = OK,
    details: str = "",
    trailers: tuple[tuple[str, str], ...] = (),
) -> Any:
    """Take the next WatchEvents call, send ``responses``, end it, and return the request."""
    _, request, rpc = channel.take_unary_stream(method("WatchEvents"))
    for response in responses:
        rpc.send_response(response)
    rpc.terminate(trailers, code, details)
    return request


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_get_prints_the_mission_as_keys_and_values(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("get", MISSION_ID)
    found = mission(mission_pb2.MISSION_STATE_RUNNING, attempt=2, labels={"team": "ops"}, worker_id="w-1")
    _, request = answer(channel, "GetMission", pb.GetMissionResponse(mission=found))

    assert done.result(timeout=10) == 0
    assert request.mission_id == MISSION_ID
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", MISSION_ID]
    assert ["state", "RUNNING"] in (line.split() for line in lines)
    assert ["attempt", "2", "of", "3"] in (line.split() for line in lines)
    assert ["labels", "team=ops"] in (line.split() for line in lines)
    assert "\x1b[" not in "\n".join(lines)  # no colour codes when stdout is not a terminal


def test_json_gives_integral_numbers_of_a_payload_and_result_back_as_integers(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("-o", "json", "get", MISSION_ID)
    payload, result = struct_pb2.Struct(), struct_pb2.Struct()
    payload.update({"fail_times": 2, "ratio": 0.5, "sizes": [1, 2.5]})
    result.update({"count": 3, "huge": 2.0**60})
    found = mission(mission_pb2.MISSION_STATE_SUCCEEDED, payload=payload, result=result)
    answer(channel, "GetMission", pb.GetMissionResponse(mission=found))

    assert done.result(timeout=10) == 0
    [shown] = json_lines(capsys.readouterr().out)
    assert shown["mission"]["payload"] == {"fail_times": 2, "ratio": 0.5, "sizes": [1, 2.5]}
    assert isinstance(shown["mission"]["payload"]["fail_times"], int)
    # Beyond 2^53 a double is no exact integer: it stays a number with a fraction part.
    assert shown["mission"]["result"] == {"count": 3, "huge": 2.0**60}
    assert isinstance(shown["mission"]["result"]["huge"], float)


def test_get_json_is_the_response_in_proto_json(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("-o", "json", "get", MISSION_ID)
    answer(channel, "GetMission", pb.GetMissionResponse(mission=mission(idempotency_key="k")))

    assert done.result(timeout=10) == 0
    assert json_lines(capsys.readouterr().out) == [
        {
            "mission": {
                "id": MISSION_ID,
                "type": "echo",
                "priority": "PRIORITY_NORMAL",
                "state": "MISSION_STATE_QUEUED",
                "max_attempts": 3,
                "idempotency_key": "k",
            }
        }
    ]


def test_server_defaults_to_missions_server(
    run: Run, channel: Any, servers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISSIONS_SERVER", "missions.internal:7000")
    done = run("get", MISSION_ID)
    answer(channel, "GetMission", pb.GetMissionResponse(mission=mission()))
    assert done.result(timeout=10) == 0
    done = run("--server", "other:1", "get", MISSION_ID)
    answer(channel, "GetMission", pb.GetMissionResponse(mission=mission()))
    assert done.result(timeout=10) == 0

    assert servers == ["missions.internal:7000", "other:1"]


def test_global_options_also_work_after_the_command(
    run: Run, channel: Any, servers: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("get", MISSION_ID, "-o", "json", "--server", "late:2")
    answer(channel, "GetMission", pb.GetMissionResponse(mission=mission()))

    assert done.result(timeout=10) == 0
    assert servers == ["late:2"]
    assert json_lines(capsys.readouterr().out)[0]["mission"]["id"] == MISSION_ID


def test_list_all_follows_page_tokens_with_the_same_filters_and_order(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["list", "--all", "--state", "queued", "--state", "running", "--type", "echo", "--newest-first"]
    done = run("-o", "json", *argv)
    first_page = pb.ListMissionsResponse(missions=[mission(id="a"), mission(id="b")], next_page_token="t1")
    _, first = answer(channel, "ListMissions", first_page)
    _, second = answer(channel, "ListMissions", pb.ListMissionsResponse(missions=[mission(id="c")]))

    assert done.result(timeout=10) == 0
    assert list(first.states) == [mission_pb2.MISSION_STATE_QUEUED, mission_pb2.MISSION_STATE_RUNNING]
    assert (first.type, first.page_token, first.page_size) == ("echo", "", 0)
    assert list(second.states) == list(first.states)
    assert (second.type, second.page_token) == ("echo", "t1")
    assert first.order_by == second.order_by == "create_time desc"
    [listing] = json_lines(capsys.readouterr().out)
    assert [found["id"] for found in listing["missions"]] == ["a", "b", "c"]
    assert "next_page_token" not in listing


@pytest.mark.parametrize(
    ("argv", "dest", "parsed"),
    [
        (["list", "--state", "SUCCEEDED", "--state", "Failed"], "state", ["succeeded", "failed"]),
        (["watch", "--type", "COMPLETED", "--type", "Failed"], "type", ["completed", "failed"]),
        (["submit", "echo", "--priority", "HIGH"], "priority", "high"),
    ],
)
def test_enum_values_are_accepted_in_any_case(argv: list[str], dest: str, parsed: Any) -> None:
    # Every output prints states, event types and priorities in upper case: they read back as printed.
    assert getattr(build_parser().parse_args(argv), dest) == parsed


def test_list_state_in_upper_case_filters_by_it(run: Run, channel: Any) -> None:
    done = run("list", "--state", "SUCCEEDED")
    _, request = answer(channel, "ListMissions", pb.ListMissionsResponse())

    assert done.result(timeout=10) == 0
    assert list(request.states) == [mission_pb2.MISSION_STATE_SUCCEEDED]


def test_list_one_page_shows_a_table_and_how_to_continue(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("list", "--page-size", "2")
    page = pb.ListMissionsResponse(missions=[mission(id="a"), mission(id="b")], next_page_token="t1")
    _, request = answer(channel, "ListMissions", page)

    assert done.result(timeout=10) == 0
    assert (request.page_size, request.order_by) == (2, "")  # oldest first
    captured = capsys.readouterr()
    rows = [line.split() for line in captured.out.splitlines()]
    assert rows[0][:3] == ["ID", "TYPE", "STATE"]
    assert [row[:3] for row in rows[1:]] == [["a", "echo", "QUEUED"], ["b", "echo", "QUEUED"]]
    assert "--page-token t1" in captured.err


def test_submit_passes_every_flag_through(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run(
        "-o",
        "json",
        "submit",
        "echo",
        "--payload",
        '{"text": "hi", "n": 2, "nested": {"ok": true, "items": [1, null]}}',
        "--priority",
        "critical",
        "--max-attempts",
        "5",
        "--timeout-s",
        "2.5",
        "--idempotency-key",
        "order-42",
        "--label",
        "team=ops",
        "--label",
        "expr=a=b",
    )
    metadata, request = answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=mission()))

    assert done.result(timeout=10) == 0
    expected_payload = struct_pb2.Struct()
    expected_payload.update({"text": "hi", "n": 2, "nested": {"ok": True, "items": [1, None]}})
    assert request.type == "echo"
    assert request.payload == expected_payload
    assert request.priority == mission_pb2.PRIORITY_CRITICAL
    assert request.max_attempts == 5
    assert request.timeout.ToMilliseconds() == 2500
    assert request.idempotency_key == "order-42"
    assert dict(request.labels) == {"team": "ops", "expr": "a=b"}
    correlation = dict(metadata)[CORRELATION_KEY]
    assert len(correlation) == 32
    assert json_lines(capsys.readouterr().out)[0]["mission"]["id"] == MISSION_ID


def test_submit_defaults_leave_fields_to_the_service(run: Run, channel: Any, tmp_path: pathlib.Path) -> None:
    payload_file = tmp_path / "payload.json"
    payload_file.write_text('{"from": "file"}', encoding="utf-8")
    done = run("submit", "echo", "--payload", f"@{payload_file}")
    _, request = answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=mission()))

    assert done.result(timeout=10) == 0
    assert dict(request.payload) == {"from": "file"}
    assert request.priority == mission_pb2.PRIORITY_UNSPECIFIED
    assert (request.max_attempts, request.idempotency_key, dict(request.labels)) == (0, "", {})
    assert not request.HasField("timeout")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "argument --payload: not valid JSON"),
        ("[1, 2]", "argument --payload: must be a JSON object, got an array"),
        ("42", "argument --payload: must be a JSON object, got a number"),
        ('{"x": NaN}', "argument --payload: not valid JSON: NaN is not allowed"),
        ("@/nonexistent/payload.json", "argument --payload: cannot read '/nonexistent/payload.json'"),
    ],
)
def test_bad_payload_is_a_usage_error(payload: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    def connect(server: str) -> Any:
        raise AssertionError("no RPC may be made")

    assert ctl.main(["submit", "echo", "--payload", payload], connect=connect) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [[], ["get"], ["list", "--state", "sleeping"], ["submit", "echo", "--label", "novalue"], ["--timeout", "0", "get"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(argv, connect=lambda server: pytest.fail("no RPC may be made")) == 2
    assert "usage: missionctl" in capsys.readouterr().err


def test_not_found_exits_8_with_the_status_on_stderr(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("get", "nope")
    answer(channel, "GetMission", pb.GetMissionResponse(), grpc.StatusCode.NOT_FOUND, "mission 'nope' not found")

    assert done.result(timeout=10) == 3 + grpc.StatusCode.NOT_FOUND.value[0] == 8
    captured = capsys.readouterr()
    assert captured.err == "error: NOT_FOUND: mission 'nope' not found\n"
    assert captured.out == ""


@pytest.mark.parametrize(
    ("argv", "rpc", "response"),
    [
        (["get", MISSION_ID[:8]], "GetMission", pb.GetMissionResponse(mission=mission())),
        (["cancel", MISSION_ID[:13]], "CancelMission", pb.CancelMissionResponse(mission=mission())),
        (["redrive", MISSION_ID[:8].upper()], "RedriveMission", pb.RedriveMissionResponse(mission=mission())),
    ],
)
def test_a_unique_id_prefix_stands_for_the_mission(
    run: Run, channel: Any, argv: list[str], rpc: str, response: Any
) -> None:
    done = run(*argv)
    _, lookup = answer(channel, "ListMissions", pb.ListMissionsResponse(missions=[mission()]))
    _, request = answer(channel, rpc, response)

    assert done.result(timeout=10) == 0
    assert (lookup.id_prefix, lookup.page_size) == (argv[1], 11)
    assert request.mission_id == MISSION_ID


def test_an_id_prefix_of_no_mission_exits_8(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("get", "e8987c7d")
    answer(channel, "ListMissions", pb.ListMissionsResponse())

    assert done.result(timeout=10) == 8
    assert capsys.readouterr().err == "error: NOT_FOUND: no mission id starts with 'e8987c7d'\n"


def test_an_ambiguous_id_prefix_lists_the_matches_and_exits_2(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("get", "e8987c7d")
    matches = [mission(id=f"e8987c7d-{n:04}") for n in range(11)]
    answer(channel, "ListMissions", pb.ListMissionsResponse(missions=matches, next_page_token="t"))

    assert done.result(timeout=10) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "missionctl: error: 'e8987c7d' is the start of several mission ids:"
    assert err[1:] == [f"  e8987c7d-{n:04}" for n in range(10)] + ["  ..."]


def test_list_passes_labels_and_time_bounds(run: Run, channel: Any) -> None:
    before = datetime.now(UTC)
    done = run(
        "list",
        "--label",
        "team=ops",
        "--label",
        "env=prod",
        "--created-after",
        "2026-01-31T09:00:00+01:00",
        "--created-before",
        "2026-02-01T00:00Z",
        "--ended-after",
        "90m",
    )
    _, request = answer(channel, "ListMissions", pb.ListMissionsResponse())

    assert done.result(timeout=10) == 0
    assert request.label_selector == "team=ops,env=prod"
    assert request.min_create_time.ToDatetime(UTC) == datetime(2026, 1, 31, 8, tzinfo=UTC)
    assert request.max_create_time.ToDatetime(UTC) == datetime(2026, 2, 1, tzinfo=UTC)
    ended_after = request.min_end_time.ToDatetime(UTC)
    assert before - timedelta(minutes=90, seconds=5) < ended_after <= before - timedelta(minutes=89)
    assert not request.HasField("max_end_time")


def test_a_bad_time_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["list", "--ended-before", "yesterday"], connect=lambda server: pytest.fail("no RPC")) == 2
    assert "expected an ISO-8601 time" in capsys.readouterr().err


def test_cancel_passes_the_reason_and_maps_failed_precondition(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("cancel", MISSION_ID, "--reason", "no longer needed")
    _, request = answer(
        channel,
        "CancelMission",
        pb.CancelMissionResponse(),
        grpc.StatusCode.FAILED_PRECONDITION,
        "mission has already finished (SUCCEEDED)",
    )

    assert done.result(timeout=10) == 12
    assert (request.mission_id, request.reason) == (MISSION_ID, "no longer needed")
    assert capsys.readouterr().err.startswith("error: FAILED_PRECONDITION: mission has already finished")


def progress_then_completed() -> list[pb.WatchEventsResponse]:
    return [
        event(7, type=events_pb2.EVENT_TYPE_STARTED, attempt=1, started=events_pb2.StartedEvent(worker_id="w-1")),
        event(8, type=events_pb2.EVENT_TYPE_PROGRESS, progress=events_pb2.ProgressEvent(fraction=0.5, message="half")),
        event(9, type=events_pb2.EVENT_TYPE_COMPLETED, completed=events_pb2.CompletedEvent()),
    ]


def serving(*mission_types: str, state: worker_pb2.WorkerState.ValueType = worker_pb2.WORKER_STATE_ACTIVE) -> Any:
    """ListWorkers with one worker in ``state`` that handles ``mission_types``."""
    found = worker_pb2.Worker(id="w-1", state=state, handler_types=mission_types)
    return pb.ListWorkersResponse(workers=[found])


def test_submit_wait_follows_events_and_exits_0_on_success(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("submit", "echo", "--wait")
    answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=mission()))
    _, listed = answer(channel, "ListWorkers", serving("sleep", "echo"))
    watch = stream(channel, progress_then_completed())
    _, get = answer(channel, "GetMission", pb.GetMissionResponse(mission=mission(mission_pb2.MISSION_STATE_SUCCEEDED)))

    assert done.result(timeout=10) == 0
    assert not listed.include_gone
    assert list(watch.mission_ids) == [MISSION_ID]
    assert not watch.HasField("after_sequence")
    assert get.mission_id == MISSION_ID
    captured = capsys.readouterr()
    out = captured.out
    assert f"submitted mission {MISSION_ID}" in out
    assert "PROGRESS" in out and "50% half" in out
    assert "COMPLETED" in out
    assert ["state", "SUCCEEDED"] in (line.split() for line in out.splitlines())
    assert captured.err == ""  # a live worker handles echo: nothing to warn about


NO_WORKER_WARNING = (
    "missionctl: no live worker handles mission type 'resize-image'; the mission stays queued until one starts"
)


@pytest.mark.parametrize("output", ["text", "json"])
def test_submit_wait_says_once_on_stderr_when_no_live_worker_handles_the_type(
    output: str, run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("-o", output, "submit", "resize-image", "--wait")
    answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=mission(type="resize-image")))
    lost = worker_pb2.Worker(id="w-0", state=worker_pb2.WORKER_STATE_LOST, handler_types=["resize-image"])
    active = worker_pb2.Worker(id="w-1", state=worker_pb2.WORKER_STATE_ACTIVE, handler_types=["echo"])
    answer(channel, "ListWorkers", pb.ListWorkersResponse(workers=[lost, active]))
    stream(channel, progress_then_completed())  # then it waits as always
    succeeded = mission(mission_pb2.MISSION_STATE_SUCCEEDED, type="resize-image")
    answer(channel, "GetMission", pb.GetMissionResponse(mission=succeeded))

    assert done.result(timeout=10) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [NO_WORKER_WARNING]
    assert NO_WORKER_WARNING not in captured.out


def test_submit_wait_goes_on_quietly_when_it_may_not_list_workers(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("submit", "resize-image", "--wait")
    answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=mission(type="resize-image")))
    answer(channel, "ListWorkers", pb.ListWorkersResponse(), grpc.StatusCode.PERMISSION_DENIED, "submitter only")
    stream(channel, progress_then_completed())
    answer(channel, "GetMission", pb.GetMissionResponse(mission=mission(mission_pb2.MISSION_STATE_SUCCEEDED)))

    assert done.result(timeout=10) == 0
    assert capsys.readouterr().err == ""


def test_submit_wait_draws_a_progress_bar_on_a_terminal(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich then treats stdout as a terminal
    done = run("submit", "echo", "--wait")
    answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=mission()))
    answer(channel, "ListWorkers", serving("echo"))
    stream(channel, progress_then_completed())
    answer(channel, "GetMission", pb.GetMissionResponse(mission=mission(mission_pb2.MISSION_STATE_SUCCEEDED)))

    assert done.result(timeout=10) == 0
    out = capsys.readouterr().out
    assert "100%" in out  # the bar, finished
    assert "COMPLETED" in out
    assert "SUCCEEDED" in out


def test_submit_wait_exits_1_when_the_mission_fails(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("-o", "json", "submit", "echo", "--wait")
    answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=mission()))
    answer(channel, "ListWorkers", serving("echo"))
    error = mission_pb2.MissionError(type="ValueError", message="boom")
    stream(
        channel,
        [
            event(8, type=events_pb2.EVENT_TYPE_FAILED, attempt=1, failed=events_pb2.FailedEvent(error=error)),
            event(9, type=events_pb2.EVENT_TYPE_DEAD_LETTERED, dead_lettered=events_pb2.DeadLetteredEvent()),
        ],
    )
    failed = mission(mission_pb2.MISSION_STATE_FAILED, error=error)
    answer(channel, "GetMission", pb.GetMissionResponse(mission=failed))

    assert done.result(timeout=10) == 1
    captured = capsys.readouterr()
    lines = json_lines(captured.out)
    assert [next(iter(line)) for line in lines] == ["mission", "event", "event", "mission"]
    assert [line["event"]["type"] for line in lines[1:3]] == ["EVENT_TYPE_FAILED", "EVENT_TYPE_DEAD_LETTERED"]
    assert lines[-1]["mission"]["state"] == "MISSION_STATE_FAILED"
    assert "did not succeed: FAILED" in captured.err


def test_watch_passes_filters_and_prints_one_line_per_event(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("watch", "--mission", MISSION_ID, "--mission", "other", "--type", "progress", "--after", "0")
    request = stream(channel, progress_then_completed()[1:])

    assert done.result(timeout=10) == 0
    assert list(request.mission_ids) == [MISSION_ID, "other"]
    assert list(request.types) == [events_pb2.EVENT_TYPE_PROGRESS]
    assert request.HasField("after_sequence") and request.after_sequence == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        ["8", "2026-01-01T00:00:08.000Z", MISSION_ID, "PROGRESS", "50%", "half"],
        ["9", "2026-01-01T00:00:09.000Z", MISSION_ID, "COMPLETED", "in", "0s", "result={}"],
    ]


def test_watch_json_prints_one_event_per_line(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("-o", "json", "watch")
    request = stream(channel, progress_then_completed())

    assert done.result(timeout=10) == 0
    assert not request.HasField("after_sequence") and not request.mission_ids
    lines = json_lines(capsys.readouterr().out)
    assert [line["event"]["sequence"] for line in lines] == ["7", "8", "9"]  # uint64 is a string in proto JSON
    assert lines[1]["event"]["progress"] == {"fraction": 0.5, "message": "half"}


def test_watch_cut_off_suggests_where_to_resume(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # grpc_testing drops responses still buffered when a call ends with an error (real gRPC
    # delivers them), so the events come first and the testing channel supplies the error.
    rpc_watch = Client.watch

    def watch(self: Client, **filters: Any) -> Iterator[events_pb2.MissionEvent]:
        yield from (response.event for response in progress_then_completed()[:2])
        yield from rpc_watch(self, **filters)

    monkeypatch.setattr(Client, "watch", watch)
    monkeypatch.setattr(sync_client, "WATCH_RETRIES", 0)  # the client gives up at the first cut
    done = run("watch")
    stream(channel, [], grpc.StatusCode.RESOURCE_EXHAUSTED, "subscriber fell behind")

    assert done.result(timeout=10) == 3 + 8
    assert capsys.readouterr().err.splitlines() == [
        "error: RESOURCE_EXHAUSTED: subscriber fell behind",
        "hint: resume with --after 8",
    ]


def test_watch_cut_off_resumes_after_the_services_last_sequence(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_client, "WATCH_RETRIES", 0)  # the client gives up at the first cut
    done = run("watch", "--type", "completed")
    # A filtered stream may have passed far more of the log than it printed.
    stream(channel, [], grpc.StatusCode.UNAVAILABLE, "shutting down", (("missions-last-sequence", "42"),))

    assert done.result(timeout=10) == 3 + 14
    assert capsys.readouterr().err.splitlines() == ["error: UNAVAILABLE: shutting down", "hint: resume with --after 42"]


def test_watch_resumes_a_cut_stream_by_itself(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("-o", "json", "watch", "--type", "completed")
    stream(channel, [], grpc.StatusCode.UNAVAILABLE, "shutting down", (("missions-last-sequence", "42"),))
    resumed = stream(channel, [event(43, type=events_pb2.EVENT_TYPE_COMPLETED, completed=events_pb2.CompletedEvent())])

    assert done.result(timeout=10) == 0
    assert resumed.after_sequence == 42 and list(resumed.types) == [events_pb2.EVENT_TYPE_COMPLETED]
    captured = capsys.readouterr()
    assert [line["event"]["sequence"] for line in json_lines(captured.out)] == ["43"]
    assert captured.err == ""


def interrupted_after(responses: list[pb.WatchEventsResponse]) -> Callable[..., Iterator[events_pb2.MissionEvent]]:
    def watch(self: Client, **filters: Any) -> Iterator[events_pb2.MissionEvent]:
        yield from (response.event for response in responses)
        raise KeyboardInterrupt

    return watch


def test_watch_exits_0_on_ctrl_c(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Client, "watch", interrupted_after(progress_then_completed()[:1]))

    assert run("watch").result(timeout=10) == 0
    assert "STARTED" in capsys.readouterr().out


def test_submit_wait_exits_130_on_ctrl_c_and_says_how_to_follow(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Client, "watch", interrupted_after([]))
    done = run("submit", "echo", "--wait")
    answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=mission()))
    answer(channel, "ListWorkers", serving("echo"))

    assert done.result(timeout=10) == 130
    assert f"missionctl watch --mission {MISSION_ID}" in capsys.readouterr().err


def test_submit_wait_on_a_mission_finished_already_still_shows_its_history(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("submit", "echo", "--wait")
    finished = mission(mission_pb2.MISSION_STATE_SUCCEEDED)  # a worker quicker than the answer
    answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=finished))
    watch = stream(channel, progress_then_completed())
    answer(channel, "GetMission", pb.GetMissionResponse(mission=finished))

    assert done.result(timeout=10) == 0
    assert list(watch.mission_ids) == [MISSION_ID]
    assert "COMPLETED" in capsys.readouterr().out


def test_submit_wait_on_a_mission_whose_history_is_gone_prints_it(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("submit", "echo", "--idempotency-key", "k", "--wait")
    finished = mission(mission_pb2.MISSION_STATE_CANCELLED, idempotency_key="k")
    answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=finished))
    stream(channel, [], grpc.StatusCode.OUT_OF_RANGE, "sequence 1 is older than the log keeps")
    answer(channel, "GetMission", pb.GetMissionResponse(mission=finished))

    assert done.result(timeout=10) == 1
    assert "did not succeed: CANCELLED" in capsys.readouterr().err


def stamp(ago: timedelta) -> timestamp_pb2.Timestamp:
    """The instant ``ago`` before now."""
    time = timestamp_pb2.Timestamp()
    time.FromDatetime(datetime.now(UTC) - ago)
    return time


def test_workers_shows_a_table_with_states_and_ages(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("workers")
    active = worker_pb2.Worker(
        id="host-a:41",
        host="host-a",
        pid=41,
        state=worker_pb2.WORKER_STATE_ACTIVE,
        running=1,
        concurrency=4,
        finished=17,
        handler_types=["echo", "sleep"],
        heartbeat_time=stamp(timedelta(hours=2)),
        last_delivery_time=stamp(timedelta(days=3)),
    )
    lost = worker_pb2.Worker(
        id="host-b:7", host="host-b", pid=7, state=worker_pb2.WORKER_STATE_LOST, concurrency=2, handler_types=["fail"]
    )
    _, request = answer(channel, "ListWorkers", pb.ListWorkersResponse(workers=[active, lost]))

    assert done.result(timeout=10) == 0
    assert not request.include_gone
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows == [
        ["ID", "HOST", "PID", "STATE", "RUNNING", "FINISHED", "TYPES", "HEARTBEAT", "DELIVERY"],
        ["host-a:41", "host-a", "41", "ACTIVE", "1/4", "17", "echo,sleep", "2h00m", "ago", "3d00h", "ago"],
        ["host-b:7", "host-b", "7", "LOST", "0/2", "0", "fail", "never"],
    ]


def test_workers_all_json_includes_gone_workers(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("-o", "json", "workers", "--all")
    stopping = worker_pb2.Worker(id="w-1", pid=3, state=worker_pb2.WORKER_STATE_STOPPING, concurrency=2)
    _, request = answer(channel, "ListWorkers", pb.ListWorkersResponse(workers=[stopping]))

    assert done.result(timeout=10) == 0
    assert request.include_gone
    assert json_lines(capsys.readouterr().out) == [
        {"workers": [{"id": "w-1", "pid": "3", "state": "WORKER_STATE_STOPPING", "concurrency": 2}]}
    ]


def test_workers_none_says_so(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("workers")
    answer(channel, "ListWorkers", pb.ListWorkersResponse())

    assert done.result(timeout=10) == 0
    assert capsys.readouterr().out == "no workers\n"


def stats_response() -> pb.GetStatsResponse:
    return pb.GetStatsResponse(
        states=[
            pb.StateCount(state=mission_pb2.MISSION_STATE_QUEUED, count=3),
            pb.StateCount(state=mission_pb2.MISSION_STATE_FAILED, count=2),
        ],
        queue_depth=3,
        dead_letter_depth=2,
        running=1,
        succeeded_last_hour=10,
        failed_last_hour=2,
        active_workers=2,
        last_sequence=42,
    )


def test_stats_shows_every_state_and_the_queues(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("stats")
    answer(channel, "GetStats", stats_response())

    assert done.result(timeout=10) == 0
    assert [line.split() for line in capsys.readouterr().out.splitlines()] == [
        ["SCHEDULED", "0"],
        ["QUEUED", "3"],
        ["RUNNING", "0"],
        ["RETRYING", "0"],
        ["SUCCEEDED", "0"],
        ["FAILED", "2"],
        ["CANCELLED", "0"],
        ["queue", "depth", "3"],
        ["dead", "letters", "2"],
        ["running", "now", "1"],
        ["succeeded", "last", "hour", "10"],
        ["failed", "last", "hour", "2"],
        ["active", "workers", "2"],
        ["last", "sequence", "42"],
    ]


def per_type_stats() -> pb.GetStatsResponse:
    stats = stats_response()
    stats.mission_types.extend(
        [
            pb.MissionTypeStats(mission_type="echo", waiting=1, queue_depth=1, active_workers=2),
            pb.MissionTypeStats(mission_type="resize-image", waiting=2, queue_depth=2),
            pb.MissionTypeStats(mission_type="sleep", active_workers=1),
        ]
    )
    return stats


def test_stats_shows_a_table_per_type_and_flags_types_without_a_live_worker(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    response = per_type_stats()
    done = run("stats")
    answer(channel, "GetStats", response)

    assert done.result(timeout=10) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[13].split() == ["last", "sequence", "42"]
    assert lines[14] == ""
    assert [line.split() for line in lines[15:]] == [
        ["TYPE", "WAITING", "DEPTH", "WORKERS"],
        ["echo", "1", "1", "2"],
        ["resize-image", "2", "2", "0", "no", "worker"],
        ["sleep", "0", "0", "1"],
    ]


def test_stats_json_per_type(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    response = per_type_stats()
    done = run("stats", "-o", "json")
    answer(channel, "GetStats", response)

    assert done.result(timeout=10) == 0
    [printed] = json_lines(capsys.readouterr().out)
    assert printed["mission_types"] == [
        {"mission_type": "echo", "waiting": "1", "queue_depth": "1", "active_workers": 2},
        {"mission_type": "resize-image", "waiting": "2", "queue_depth": "2"},
        {"mission_type": "sleep", "active_workers": 1},
    ]


def test_stats_json_is_the_response(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("stats", "-o", "json")
    answer(channel, "GetStats", stats_response())

    assert done.result(timeout=10) == 0
    assert json_lines(capsys.readouterr().out) == [
        {  # int64 and uint64 are strings in proto JSON
            "states": [
                {"state": "MISSION_STATE_QUEUED", "count": "3"},
                {"state": "MISSION_STATE_FAILED", "count": "2"},
            ],
            "queue_depth": "3",
            "dead_letter_depth": "2",
            "running": "1",
            "succeeded_last_hour": "10",
            "failed_last_hour": "2",
            "active_workers": 2,
            "last_sequence": "42",
        }
    ]


def dead(mission_id: str) -> mission_pb2.Mission:
    error = mission_pb2.MissionError(type="ValueError", message=f"bad {mission_id}")
    return mission(mission_pb2.MISSION_STATE_FAILED, id=mission_id, type="fail", attempt=3, error=error)


def test_dead_letters_all_follows_page_tokens_with_the_same_filter(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("-o", "json", "dead-letters", "--all", "--type", "fail", "--page-size", "1")
    _, first = answer(
        channel, "ListDeadLetters", pb.ListDeadLettersResponse(missions=[dead("a")], next_page_token="t1")
    )
    _, second = answer(channel, "ListDeadLetters", pb.ListDeadLettersResponse(missions=[dead("b")]))

    assert done.result(timeout=10) == 0
    assert (first.type, first.page_size, first.page_token) == ("fail", 1, "")
    assert (second.type, second.page_size, second.page_token) == ("fail", 1, "t1")
    [listing] = json_lines(capsys.readouterr().out)
    assert [found["id"] for found in listing["missions"]] == ["a", "b"]
    assert listing["missions"][1]["error"] == {"type": "ValueError", "message": "bad b"}
    assert "next_page_token" not in listing


def test_dead_letters_shows_the_list_table_with_the_last_error(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("dead-letters", "--page-token", "t1")
    page = pb.ListDeadLettersResponse(missions=[dead("a")], next_page_token="t2")
    _, request = answer(channel, "ListDeadLetters", page)

    assert done.result(timeout=10) == 0
    assert (request.page_token, request.page_size, request.type) == ("t1", 0, "")
    captured = capsys.readouterr()
    rows = [line.split() for line in captured.out.splitlines()]
    assert rows == [
        ["ID", "TYPE", "STATE", "PRIORITY", "ATTEMPT", "PROGRESS", "CREATED", "ERROR"],
        ["a", "fail", "FAILED", "normal", "3/3", "0%", "ValueError:", "bad", "a"],
    ]
    assert "--page-token t2" in captured.err


def test_dead_letters_sends_the_error_type_and_label_filters(run: Run, channel: Any) -> None:
    done = run("dead-letters", "--error-type", "DeadlineExceeded", "--label", "team=a", "--label", "env=dev")
    _, request = answer(channel, "ListDeadLetters", pb.ListDeadLettersResponse())

    assert done.result(timeout=10) == 0
    assert (request.error_type, request.label_selector) == ("DeadlineExceeded", "team=a,env=dev")


def test_redrive_dead_letters_dry_run_sends_the_filter_and_names_the_missions(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run(
        "redrive-dead-letters", "--type", "resize", "--error-type", "Timeout", "--max-attempts", "5", "--dry-run"
    )
    answered = pb.RedriveDeadLettersResponse(count=3, mission_ids=["a", "b"])
    _, request = answer(channel, "RedriveDeadLetters", answered)

    assert done.result(timeout=10) == 0
    assert (request.filter.type, request.filter.error_type, request.max_attempts, request.dry_run) == (
        "resize",
        "Timeout",
        5,
        True,
    )
    assert capsys.readouterr().out.splitlines() == ["would redrive 3 dead letter(s):", "  a", "  b", "  ... and 1 more"]


def test_purge_dead_letters_with_yes_purges_at_once_and_prints_json(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("-o", "json", "purge-dead-letters", "--label", "env=staging", "--yes")
    _, request = answer(channel, "PurgeDeadLetters", pb.PurgeDeadLettersResponse(count=1, mission_ids=["a"]))

    assert done.result(timeout=10) == 0
    assert (request.filter.label_selector, request.dry_run) == ("env=staging", False)
    assert json_lines(capsys.readouterr().out) == [{"count": "1", "mission_ids": ["a"], "dry_run": False}]


def test_a_bulk_operation_without_yes_is_refused_when_nobody_can_answer(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # pytest's stdin is not a terminal: nothing is sent, and the user is told what to add.
    assert run("purge-dead-letters").result(timeout=10) == 2
    assert "add --yes" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer_", "confirmed"), [("y\n", True), ("\n", False)])
def test_a_bulk_operation_asks_on_a_terminal_with_the_count_first(
    run: Run,
    channel: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer_: str,
    confirmed: bool,
) -> None:
    monkeypatch.setattr("sys.stdin", _Terminal(answer_))
    done = run("redrive-dead-letters", "--type", "fail")
    _, dry = answer(channel, "RedriveDeadLetters", pb.RedriveDeadLettersResponse(count=2, mission_ids=["a", "b"]))
    if confirmed:
        _, real = answer(channel, "RedriveDeadLetters", pb.RedriveDeadLettersResponse(count=2, mission_ids=["a", "b"]))
        assert (real.filter.type, real.dry_run) == ("fail", False)

    assert done.result(timeout=10) == 0
    assert (dry.filter.type, dry.dry_run) == ("fail", True)
    captured = capsys.readouterr()
    assert "redrive 2 dead letter(s)? [y/N]" in captured.err
    assert captured.out.splitlines()[:1] == (["2 dead letter(s) redriven:"] if confirmed else [])


def test_dead_letters_none_says_so(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("dead-letters")
    answer(channel, "ListDeadLetters", pb.ListDeadLettersResponse())

    assert done.result(timeout=10) == 0
    assert capsys.readouterr().out == "no dead-lettered missions\n"


@pytest.mark.parametrize(("flags", "max_attempts"), [(["--max-attempts", "5"], 5), ([], 0)])
def test_redrive_passes_max_attempts_and_prints_the_mission(
    flags: list[str], max_attempts: int, run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("redrive", MISSION_ID, *flags)
    redriven = mission(max_attempts=max_attempts or 3)
    _, request = answer(channel, "RedriveMission", pb.RedriveMissionResponse(mission=redriven))

    assert done.result(timeout=10) == 0
    assert (request.mission_id, request.max_attempts) == (MISSION_ID, max_attempts)
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == ["id", MISSION_ID]
    assert ["state", "QUEUED"] in lines
    assert ["attempt", "0", "of", str(max_attempts or 3)] in lines


def test_redrive_json_is_the_response(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("-o", "json", "redrive", MISSION_ID)
    answer(channel, "RedriveMission", pb.RedriveMissionResponse(mission=mission()))

    assert done.result(timeout=10) == 0
    assert json_lines(capsys.readouterr().out) == [
        {
            "mission": {
                "id": MISSION_ID,
                "type": "echo",
                "priority": "PRIORITY_NORMAL",
                "state": "MISSION_STATE_QUEUED",
                "max_attempts": 3,
            }
        }
    ]


@pytest.mark.parametrize(
    ("argv", "name", "empty", "code"),
    [
        (["workers"], "ListWorkers", pb.ListWorkersResponse(), grpc.StatusCode.UNAVAILABLE),
        (["stats"], "GetStats", pb.GetStatsResponse(), grpc.StatusCode.DEADLINE_EXCEEDED),
        (["dead-letters", "--all"], "ListDeadLetters", pb.ListDeadLettersResponse(), grpc.StatusCode.INVALID_ARGUMENT),
        (["redrive", MISSION_ID], "RedriveMission", pb.RedriveMissionResponse(), grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_operator_commands_exit_3_plus_the_status_code(
    argv: list[str],
    name: str,
    empty: Any,
    code: grpc.StatusCode,
    run: Run,
    channel: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = run(*argv)
    answer(channel, name, empty, code, "no can do")

    assert done.result(timeout=10) == 3 + code.value[0]
    captured = capsys.readouterr()
    assert captured.err == f"error: {code.name}: no can do\n"
    assert captured.out == ""


def test_redrive_rejects_a_budget_below_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["redrive", MISSION_ID, "--max-attempts", "0"], connect=lambda server: pytest.fail("no RPC")) == 2
    assert "argument --max-attempts: must be at least 1" in capsys.readouterr().err


def test_watch_describes_a_redrive(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("watch")
    redriven = events_pb2.RedrivenEvent(mission=mission(max_attempts=5), requested_by="ops", redrive_count=2)
    stream(channel, [event(10, type=events_pb2.EVENT_TYPE_REDRIVEN, redriven=redriven)])

    assert done.result(timeout=10) == 0
    assert capsys.readouterr().out.split()[3:] == ["REDRIVEN", "redrive", "2,", "max", "attempts", "5", "by", "ops"]


def test_watch_skips_the_heartbeats_of_an_idle_stream(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("-o", "json", "watch", "--after", "0")
    heartbeat = pb.WatchEventsResponse(heartbeat=pb.WatchHeartbeat(last_sequence=4))
    stream(channel, [heartbeat, event(5, type=events_pb2.EVENT_TYPE_CREATED)])
    assert done.result(timeout=10) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event"]["sequence"] for line in lines] == ["5"]


def worker(worker_id: str, finished: int = 0) -> worker_pb2.Worker:
    return worker_pb2.Worker(
        id=worker_id,
        host="h",
        pid=1,
        state=worker_pb2.WORKER_STATE_ACTIVE,
        concurrency=2,
        finished=finished,
        session="s",
    )


@pytest.mark.parametrize(
    ("argv", "name", "response", "lines"),
    [
        (["get", MISSION_ID], "GetMission", pb.GetMissionResponse(mission=mission()), ["mission"]),
        (["cancel", MISSION_ID], "CancelMission", pb.CancelMissionResponse(mission=mission()), ["mission"]),
        (["redrive", MISSION_ID], "RedriveMission", pb.RedriveMissionResponse(mission=mission()), ["mission"]),
        (["submit", "echo"], "SubmitMission", pb.SubmitMissionResponse(mission=mission()), ["mission"]),
        (
            ["list"],
            "ListMissions",
            pb.ListMissionsResponse(missions=[mission(id="a"), mission(id="b")], next_page_token="t1"),
            ["mission", "mission", "next_page_token"],
        ),
        (
            ["dead-letters"],
            "ListDeadLetters",
            pb.ListDeadLettersResponse(missions=[dead("a")]),
            ["mission"],
        ),
        (["workers"], "ListWorkers", pb.ListWorkersResponse(workers=[worker("w-1"), worker("w-2")]), ["worker"] * 2),
        (["stats"], "GetStats", stats_response(), ["stats"]),
    ],
)
def test_jsonl_prints_one_keyed_item_per_line(
    argv: list[str],
    name: str,
    response: Any,
    lines: list[str],
    run: Run,
    channel: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = run("-o", "jsonl", *argv)
    answer(channel, name, response)

    assert done.result(timeout=10) == 0
    printed = json_lines(capsys.readouterr().out)
    assert [list(line) for line in printed] == [[key] for key in lines]
    if name == "ListMissions":
        assert [line["mission"]["id"] for line in printed[:2]] == ["a", "b"]
        assert printed[2] == {"next_page_token": "t1"}
    if name == "GetStats":
        assert printed[0]["stats"]["queue_depth"] == "3"


def test_watch_jsonl_prints_one_event_per_line(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("watch", "-o", "jsonl", "--mission-type", "echo", "--label", "team=ops", "--label", "env=prod")
    request = stream(channel, progress_then_completed())

    assert done.result(timeout=10) == 0
    assert list(request.mission_types) == ["echo"] and request.label_selector == "team=ops,env=prod"
    lines = json_lines(capsys.readouterr().out)
    assert [line["event"]["type"] for line in lines] == [
        "EVENT_TYPE_STARTED",
        "EVENT_TYPE_PROGRESS",
        "EVENT_TYPE_COMPLETED",
    ]


def test_submit_wait_jsonl_prints_the_mission_its_events_and_the_final_mission(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run("submit", "echo", "--wait", "-o", "jsonl")
    answer(channel, "SubmitMission", pb.SubmitMissionResponse(mission=mission()))
    answer(channel, "ListWorkers", serving("echo"))
    stream(channel, progress_then_completed())
    answer(channel, "GetMission", pb.GetMissionResponse(mission=mission(mission_pb2.MISSION_STATE_SUCCEEDED)))

    assert done.result(timeout=10) == 0
    lines = json_lines(capsys.readouterr().out)
    assert [next(iter(line)) for line in lines] == ["mission", "event", "event", "event", "mission"]
    assert lines[3]["event"]["type"] == "EVENT_TYPE_COMPLETED"
    assert lines[-1]["mission"]["state"] == "MISSION_STATE_SUCCEEDED"


def test_output_mode_from_the_config_file(
    run: Run, channel: Any, isolated_settings: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = isolated_settings / "missions" / "missionctl.toml"
    config.parent.mkdir(parents=True)
    config.write_text('output = "jsonl"\nserver = "from-file:9"\n')
    done = run("workers")
    answer(channel, "ListWorkers", pb.ListWorkersResponse(workers=[worker("w-1")]))

    assert done.result(timeout=10) == 0
    assert json_lines(capsys.readouterr().out) == [{"worker": json_format_worker(worker("w-1"))}]


def json_format_worker(found: worker_pb2.Worker) -> dict[str, Any]:
    return {"id": found.id, "host": "h", "pid": "1", "state": "WORKER_STATE_ACTIVE", "concurrency": 2, "session": "s"}


def test_watch_draws_a_live_table_on_a_terminal(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "200")
    done = run("watch", "--mission", MISSION_ID)
    stream(channel, progress_then_completed())

    assert done.result(timeout=10) == 0
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", capsys.readouterr().out)  # styles and cursor moves
    last_frame = out[out.rindex("ID") :]  # the frame left on the screen
    rows = [line.split() for line in last_frame.splitlines() if line.strip()]
    assert rows[0] == ["ID", "TYPE", "STATE", "ATTEMPT", "PROGRESS", "MESSAGE"]
    assert rows[1][:3] == [MISSION_ID, "SUCCEEDED", "1"]  # these events carry no mission_type
    assert "100%" in rows[1]
    assert "1 missions, 3 events" in last_frame


def table_rows(out: str) -> list[list[str]]:
    """The rows of the last frame a live table left on the screen."""
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", out)  # styles and cursor moves
    return [line.split() for line in out[out.rindex("ID") :].splitlines() if line.strip()]


def created_at(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=1_767_225_600 + seconds)


def test_watch_table_starts_with_the_missions_not_final_and_the_most_recent_then_follows(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LINES", "10")  # 7 rows of missions
    done = run("watch", "--mission-type", "echo")
    # "c" is created after GetStats and before ListMissions: the replay brings its CREATED again.
    answer(channel, "GetStats", pb.GetStatsResponse(last_sequence=40))
    running = mission(
        mission_pb2.MISSION_STATE_RUNNING, id="a", attempt=1, progress=0.25, last_sequence=40, create_time=created_at(1)
    )
    other_type = mission(mission_pb2.MISSION_STATE_QUEUED, id="b", type="resize")
    first_page = pb.ListMissionsResponse(missions=[running, other_type], next_page_token="t1")
    _, listing = answer(channel, "ListMissions", first_page)
    queued = mission(id="c", last_sequence=41, create_time=created_at(3))
    _, following = answer(channel, "ListMissions", pb.ListMissionsResponse(missions=[queued]))
    # The most recent missions, newest first: the unfinished ones are in the table already.
    done_d = mission(mission_pb2.MISSION_STATE_SUCCEEDED, id="d", progress=1.0, create_time=created_at(2))
    _, recent = answer(channel, "ListMissions", pb.ListMissionsResponse(missions=[queued, done_d, running]))
    # The stream replays from the stats' sequence: "c"'s CREATED is already in its row.
    created = event(41, type=events_pb2.EVENT_TYPE_CREATED, mission_type="echo")
    created.event.mission_id = "c"
    started = event(42, type=events_pb2.EVENT_TYPE_STARTED, mission_type="echo", attempt=1)
    started.event.mission_id = "c"
    request = stream(channel, [created, started])

    assert done.result(timeout=10) == 0
    unfinished = {
        mission_pb2.MISSION_STATE_QUEUED,
        mission_pb2.MISSION_STATE_RUNNING,
        mission_pb2.MISSION_STATE_RETRYING,
    }
    assert set(listing.states) == unfinished and following.page_token == "t1"
    # Room for 7 - 2: any state (the final ones are kept here), of the watched type, newest first.
    assert (list(recent.states), recent.type, recent.page_size) == ([], "echo", 5)
    assert recent.order_by == "create_time desc"
    assert request.HasField("after_sequence") and request.after_sequence == 40
    assert list(request.mission_types) == ["echo"]
    rows = table_rows(capsys.readouterr().out)
    assert [row[:4] for row in rows[1:4]] == [
        ["a", "echo", "RUNNING", "1/3"],
        ["d", "echo", "SUCCEEDED", "0/3"],
        ["c", "echo", "RUNNING", "1/3"],
    ]
    assert "25%" in rows[1]
    assert "3 missions, 2 events" in " ".join(" ".join(row) for row in rows)


def test_watch_table_fills_the_screen_with_the_most_recent_final_missions_of_each_type(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LINES", "7")  # 4 rows of missions
    done = run("watch", "--mission-type", "echo", "--mission-type", "resize", "--label", "team=ops")
    answer(channel, "GetStats", pb.GetStatsResponse(last_sequence=50))
    ops = {"team": "ops"}
    running = mission(mission_pb2.MISSION_STATE_RUNNING, id="u", labels=ops, create_time=created_at(5))
    unlabelled = mission(mission_pb2.MISSION_STATE_QUEUED, id="v", create_time=created_at(6))
    answer(channel, "ListMissions", pb.ListMissionsResponse(missions=[running, unlabelled]))
    ended = {
        name: mission(state, id=name, type=kind, labels=ops, create_time=created_at(at))
        for name, state, kind, at in [
            ("e3", mission_pb2.MISSION_STATE_SUCCEEDED, "echo", 40),
            ("e2", mission_pb2.MISSION_STATE_FAILED, "echo", 20),
            ("e1", mission_pb2.MISSION_STATE_SUCCEEDED, "echo", 10),
            ("r1", mission_pb2.MISSION_STATE_CANCELLED, "resize", 30),
        ]
    }
    echo_page = pb.ListMissionsResponse(missions=[ended["e3"], running, ended["e2"], ended["e1"]])
    _, echo = answer(channel, "ListMissions", echo_page)
    _, resize = answer(channel, "ListMissions", pb.ListMissionsResponse(missions=[ended["r1"]]))
    stream(channel, [])

    assert done.result(timeout=10) == 0
    for listing, kind in ((echo, "echo"), (resize, "resize")):
        assert (listing.type, listing.label_selector, listing.page_size) == (kind, "team=ops", 3)
        assert listing.order_by == "create_time desc"
    rows = table_rows(capsys.readouterr().out)
    # The 3 newest final missions of both types, after the one not final, oldest first; none hidden.
    assert [row[0] for row in rows[1:5]] == ["u", "e2", "r1", "e3"]
    summary = " ".join(rows[5])
    assert summary.startswith("4 missions") and "not shown" not in summary


def test_watch_table_lists_no_recent_mission_when_those_not_final_fill_the_screen(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("LINES", "5")  # 2 rows of missions
    done = run("watch")
    answer(channel, "GetStats", pb.GetStatsResponse(last_sequence=9))
    listed = [mission(id="a"), mission(mission_pb2.MISSION_STATE_RUNNING, id="b")]
    answer(channel, "ListMissions", pb.ListMissionsResponse(missions=listed))
    request = stream(channel, [])  # next comes WatchEvents: no listing of recent missions

    assert done.result(timeout=10) == 0
    assert request.after_sequence == 9


@pytest.mark.parametrize(("unfinished", "after"), [(True, 9), (False, 12)])
def test_watch_table_without_the_operator_role_follows_from_the_first_listing(
    run: Run,
    channel: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    unfinished: bool,
    after: int,
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    done = run("watch")
    answer(channel, "GetStats", pb.GetStatsResponse(), grpc.StatusCode.PERMISSION_DENIED, "operator only")
    listed = [mission(id="a", last_sequence=7), mission(mission_pb2.MISSION_STATE_RUNNING, id="b", last_sequence=9)]
    answer(channel, "ListMissions", pb.ListMissionsResponse(missions=listed if unfinished else []))
    finished = mission(mission_pb2.MISSION_STATE_SUCCEEDED, id="c", last_sequence=12)
    answer(channel, "ListMissions", pb.ListMissionsResponse(missions=[finished]))
    request = stream(channel, [])

    assert done.result(timeout=10) == 0
    # The newest change the listing of unfinished missions shows, else the recent one's: a
    # later listing's could be past changes of "a" and "b", which their rows would miss.
    assert request.after_sequence == after
    shown = [row[:3] for row in table_rows(capsys.readouterr().out)[1:-1]]  # no header, no summary
    first = [["a", "echo", "QUEUED"], ["b", "echo", "RUNNING"]] if unfinished else []
    assert shown == [*first, ["c", "echo", "SUCCEEDED"]]


@pytest.mark.parametrize("argv", [["--after", "5"], ["--plain"], ["-o", "jsonl"]])
def test_watch_lines_and_replays_start_with_no_listing(
    run: Run, channel: Any, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    done = run("watch", *argv)
    stream(channel, [])  # the first call is WatchEvents: no GetStats, no ListMissions

    assert done.result(timeout=10) == 0


def test_watch_plain_prints_lines_even_on_a_terminal(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    done = run("watch", "--plain", "--color", "never")
    stream(channel, progress_then_completed())

    assert done.result(timeout=10) == 0
    out = capsys.readouterr().out
    assert [line.split()[3] for line in out.splitlines()] == ["STARTED", "PROGRESS", "COMPLETED"]
    assert "\x1b[" not in out


def answer_top(channel: Any, finished: int) -> tuple[Any, Any]:
    """Reply to one frame's GetStats and ListWorkers; return the ListWorkers request."""
    _, stats_request = answer(channel, "GetStats", stats_response())
    _, workers_request = answer(channel, "ListWorkers", pb.ListWorkersResponse(workers=[worker("w-1", finished)]))
    return stats_request, workers_request


def test_top_once_prints_one_frame(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("top", "--once", "--all")
    _, workers_request = answer_top(channel, finished=5)

    assert done.result(timeout=10) == 0
    assert workers_request.include_gone
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert rows[0][:2] == ["missionctl", "top"]
    assert rows[2][:3] == ["queues", "depth", "3"]
    assert rows[5][:7] == ["w-1", "h", "1", "ACTIVE", "0/2", "5", "-"]


def test_top_json_prints_a_frame_per_line_until_ctrl_c(
    run: Run, channel: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(top_module, "sleep", sleep)
    done = run("top", "-o", "json", "--interval", "0.5")
    answer_top(channel, finished=5)
    answer_top(channel, finished=9)

    assert done.result(timeout=10) == 0
    assert naps == [0.5, 0.5]
    first, second = json_lines(capsys.readouterr().out)
    assert first["stats"]["queue_depth"] == "3" and first["workers"][0]["finished"] == "5"
    assert first["rates"]["events_per_s"] is None and first["rates"]["worker_attempts_per_s"] == {}
    assert second["rates"]["events_per_s"] == 0.0
    assert second["rates"]["worker_attempts_per_s"]["w-1"] > 0


def test_top_exits_3_plus_the_status_code(run: Run, channel: Any, capsys: pytest.CaptureFixture[str]) -> None:
    done = run("top", "--once")
    answer(channel, "GetStats", pb.GetStatsResponse(), grpc.StatusCode.UNAVAILABLE, "no service")

    assert done.result(timeout=10) == 3 + 14
    assert capsys.readouterr().err == "error: UNAVAILABLE: no service\n"
