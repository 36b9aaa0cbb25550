"""End to end: both real processes serve Prometheus metrics that move with the missions they
run, and log each mission's lines with its id and correlation id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from missions.v1 import events_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.support import Process, Stack, drain, free_port, payload, watching

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


async def _scrape(port: int) -> Samples:
    text = await asyncio.to_thread(_fetch, port)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _json_lines(process: Process) -> Iterator[dict[str, object]]:
    for line in process.output().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                yield entry


async def test_service_and_worker_metrics_move_with_the_missions(stack: Stack) -> None:
    service_port, worker_port = free_port(), free_port()
    logs = ("--log-format", "json", "--log-level", "DEBUG")
    service = await stack.start_service("--metrics-listen", f"127.0.0.1:{service_port}", *logs)
    worker = stack.start_worker(
        *("--metrics-listen", f"127.0.0.1:{worker_port}", *logs),
        *("--retry-base", "0.01", "--retry-max", "0.05"),
    )
    before = await _scrape(service_port)
    assert _value(before, "missions_submitted_total", type="echo") == 0

    requests = [
        pb.SubmitMissionRequest(type="echo", payload=payload(text="hi")),
        pb.SubmitMissionRequest(type="fail", payload=payload(fail_times=2), max_attempts=3),  # succeeds on 3
        pb.SubmitMissionRequest(type="fail", payload=payload(message="boom"), max_attempts=2),  # dead-lettered
    ]
    # after_sequence=0 on a fresh namespace: every event, however early the stream registers.
    async with watching(stack.stub, pb.WatchEventsRequest(after_sequence=0)) as live:
        missions = [
            (await stack.stub.SubmitMission(request, metadata=(("x-correlation-id", f"corr-{index}"),))).mission
            for index, request in enumerate(requests)
        ]
        # Every counter below moves before the final event reaches a watcher.
        finals = [event async for event in drain(live, [mission.id for mission in missions]) if event.type in _FINAL]
        assert sorted(events_pb2.EventType.Name(event.type) for event in finals) == [
            "EVENT_TYPE_COMPLETED",
            "EVENT_TYPE_COMPLETED",
            "EVENT_TYPE_DEAD_LETTERED",
        ]
        service_metrics = await _scrape(service_port)
        assert _value(service_metrics, "missions_watch_subscribers") == 1
    worker_metrics = await _scrape(worker_port)

    expected = {
        ("missions_submitted_total", "echo"): 1,
        ("missions_submitted_total", "fail"): 2,
        ("missions_started_total", "fail"): 5,
        ("missions_failed_total", "fail"): 4,
        ("missions_retried_total", "fail"): 3,
        ("missions_succeeded_total", "echo"): 1,
        ("missions_succeeded_total", "fail"): 1,
        ("missions_dead_lettered_total", "fail"): 1,
        ("missions_cancelled_total", "fail"): 0,
        ("missions_end_to_end_seconds_count", "echo"): 1,
        ("missions_end_to_end_seconds_count", "fail"): 2,
    }
    assert {key: _value(service_metrics, key[0], type=key[1]) for key in expected} == expected
    assert _value(service_metrics, "missions_events_published_total", event_type="created") == 3
    # Every event precedes its mission's final one: 3 CREATED, 6 STARTED, 4 FAILED, 3 RETRYING, 3 final.
    assert _value(service_metrics, "missions_log_events_read_total") == 19
    assert _value(service_metrics, "missions_log_position") == max(event.sequence for event in finals)
    assert ("missions_broker_reconnects_total", frozenset({("connection", "log")})) in service_metrics

    attempts = "missions_attempt_duration_seconds_count"
    assert _value(worker_metrics, attempts, type="echo", outcome="succeeded") == 1
    assert _value(worker_metrics, attempts, type="fail", outcome="succeeded") == 1
    assert _value(worker_metrics, attempts, type="fail", outcome="failed") == 4
    assert _value(worker_metrics, "missions_queue_wait_seconds_count", type="fail") == 5
    assert _value(worker_metrics, "missions_events_published_total", event_type="started") == 6
    assert ("missions_outbox_depth", frozenset()) in worker_metrics
    assert ("missions_worker_running", frozenset()) in worker_metrics
    assert ("missions_worker_waiting", frozenset()) in worker_metrics
    assert _value(worker_metrics, "missions_worker_awaiting_word") == 0
    assert "missions_submitted_total" not in {name for name, _ in worker_metrics}  # the service's alone

    # At DEBUG, one JSON line per accepted submission and per attempt started, naming the mission.
    for index, mission in enumerate(missions):
        fields = {"mission_id": mission.id, "correlation_id": f"corr-{index}"}
        queued = [e for e in _json_lines(service) if fields.items() <= e.items() and "queued" in str(e["message"])]
        started = [e for e in _json_lines(worker) if fields.items() <= e.items() and "started" in str(e["message"])]
        assert len(queued) == 1, service.output()
        assert [entry["attempt"] for entry in started] == list(range(1, len(started) + 1)), worker.output()
        assert len(started) == [1, 3, 2][index]


_FINAL = {events_pb2.EVENT_TYPE_COMPLETED, events_pb2.EVENT_TYPE_DEAD_LETTERED, events_pb2.EVENT_TYPE_CANCELLED}
