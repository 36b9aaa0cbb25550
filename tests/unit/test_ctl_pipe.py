"""missionctl writing into a pipe whose reader goes away (``missionctl list -o jsonl | head -1``):
a real process, a real pipe, and a small in-process gRPC server that has more to say than a pipe holds."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from missions.v1 import events_pb2, mission_pb2, mission_service_pb2_grpc, worker_pb2
from missions.v1 import mission_service_pb2 as pb

pytestmark = pytest.mark.timeout(30)

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Far more than a pipe's buffer (64 KiB on Linux), so the writer is still writing when the reader leaves.
MANY = 3000


def missions() -> list[mission_pb2.Mission]:
    return [
        mission_pb2.Mission(id=f"m-{index:05}", type="echo", state=mission_pb2.MISSION_STATE_QUEUED)
        for index in range(MANY)
    ]


class Talkative(mission_service_pb2_grpc.MissionServiceServicer):
    """Answers every listing with MANY items and streams events until the client goes away."""

    def ListMissions(self, request: pb.ListMissionsRequest, context: Any) -> pb.ListMissionsResponse:
        return pb.ListMissionsResponse(missions=missions())

    def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: Any) -> pb.ListDeadLettersResponse:
        return pb.ListDeadLettersResponse(missions=missions())

    def ListWorkers(self, request: pb.ListWorkersRequest, context: Any) -> pb.ListWorkersResponse:
        return pb.ListWorkersResponse(workers=[worker_pb2.Worker(id=f"w-{index:05}") for index in range(MANY)])

    def WatchEvents(self, request: pb.WatchEventsRequest, context: Any) -> Iterator[pb.WatchEventsResponse]:
        for sequence in range(1, 100 * MANY):
            if not context.is_active():
                return
            created = events_pb2.CreatedEvent(mission=mission_pb2.Mission(id=f"m-{sequence}", type="echo"))
            yield pb.WatchEventsResponse(
                event=events_pb2.MissionEvent(
                    sequence=sequence,
                    mission_id=f"m-{sequence}",
                    type=events_pb2.EVENT_TYPE_CREATED,
                    created=created,
                )
            )


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    # The other RPCs are left to the base class, which answers UNIMPLEMENTED.
    mission_service_pb2_grpc.add_MissionServiceServicer_to_server(Talkative(), grpc_server)  # type: ignore[abstract]
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    yield f"127.0.0.1:{port}"
    grpc_server.stop(grace=None)


COMMANDS = {
    "list -o jsonl": ["list", "-o", "jsonl"],
    "list": ["list"],  # text: rich's own answer was to exit 1
    "dead-letters -o jsonl": ["dead-letters", "-o", "jsonl"],
    "workers -o jsonl": ["workers", "-o", "jsonl"],
    "watch -o jsonl": ["watch", "-o", "jsonl"],
    "watch": ["watch"],
}


@pytest.fixture(scope="module")
def endings(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, int, bytes]]:
    """Run each of COMMANDS (at once, to save time), read one line of its stdout and close the pipe,
    like ``| head -1``; return each one's line, exit status and stderr."""
    # Buffered, as users run it: unbuffered, Python drops what a partial write leaves and goes on.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MISSIONS_", "PYTHONUNBUFFERED"))}
    env |= {"PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("xdg")), "MISSIONS_SERVER": server}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "missions.ctl", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        for name, argv in COMMANDS.items()
    }
    endings = {}
    for name, process in processes.items():
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()
        process.stdout.close()
        endings[name] = line, process.wait(timeout=20), process.stderr.read()
    return endings


@pytest.mark.parametrize("command", COMMANDS)
def test_a_closed_pipe_ends_quietly_with_141(endings: dict[str, tuple[bytes, int, bytes]], command: str) -> None:
    line, status, err = endings[command]

    assert line  # it did print before the reader left
    assert err == b""  # no BrokenPipeError traceback, no "Exception ignored" from the final flush
    assert status == 141  # 128 + SIGPIPE, what a shell reports for a writer stopped by a closed pipe
