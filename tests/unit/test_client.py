"""missions.Client and missions.AsyncClient against a real grpc.aio server on 127.0.0.1:0 with a
scripted servicer; every test runs with both flavours (the synchronous one in a thread).

Errors are answered through mission_service/status.py, so these tests check that the client
reads back exactly what the service writes.
"""

from __future__ import annotations

import asyncio
import inspect
import pathlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

import missions
from mission_service.status import abort
from missions import errors
from missions.client import (
    AsyncClient,
    Client,
    ClientSettings,
    MissionCancelled,
    MissionFailed,
    payload_dict,
    status_code,
    submit_request,
)
from missions.client._settings import OPTIONS
from missions.metadata import CORRELATION_KEY
from missions.v1 import events_pb2, mission_pb2, mission_service_pb2_grpc
from missions.v1 import mission_service_pb2 as pb

pytestmark = pytest.mark.timeout(30)

MISSION_ID = "m-1"
Run = Callable[[Callable[[Any], Any]], Any]


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def event(
    sequence: int, kind: events_pb2.EventType.ValueType = events_pb2.EVENT_TYPE_PROGRESS
) -> pb.WatchEventsResponse:
    return pb.WatchEventsResponse(
        event=events_pb2.MissionEvent(id=f"e{sequence}", sequence=sequence, mission_id=MISSION_ID, type=kind)
    )


def heartbeat(last_sequence: int) -> pb.WatchEventsResponse:
    return pb.WatchEventsResponse(heartbeat=pb.WatchHeartbeat(last_sequence=last_sequence))


@dataclass
class Stream:
    """One WatchEvents call's answer: these responses, then this error (None: OK; "hang": never ends)."""

    responses: list[pb.WatchEventsResponse]
    error: BaseException | str | None = None


@dataclass
class FakeService(mission_service_pb2_grpc.MissionServiceServicer):
    """Answers from its fields; ``fail`` makes a method abort with that error's status."""

    missions: list[mission_pb2.Mission] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)
    fail: dict[str, BaseException] = field(default_factory=dict)
    requests: dict[str, list[Any]] = field(default_factory=dict)
    metadata: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    time_left: dict[str, list[float | None]] = field(default_factory=dict)
    page_size: int = 2

    async def _answer(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.requests.setdefault(name, []).append(request)
        self.metadata.setdefault(name, []).append(dict(context.invocation_metadata() or ()))
        self.time_left.setdefault(name, []).append(context.time_remaining())
        if name in self.fail:
            await abort(context, self.fail[name])

    async def GetMission(self, request: pb.GetMissionRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("GetMission", request, context)
        # Each get shows the next recorded version of the mission; the last one stays.
        found = self.missions.pop(0) if len(self.missions) > 1 else self.missions[0]
        return pb.GetMissionResponse(mission=found)

    async def SubmitMission(self, request: pb.SubmitMissionRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("SubmitMission", request, context)
        return pb.SubmitMissionResponse(
            mission=mission_pb2.Mission(id=MISSION_ID, type=request.type, payload=request.payload)
        )

    async def SubmitMissions(self, request: pb.SubmitMissionsRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("SubmitMissions", request, context)
        refused = pb.SubmitMissionError(code=3, message="payload: too big", reason="INVALID_ARGUMENT", field="payload")
        return pb.SubmitMissionsResponse(
            results=[
                pb.SubmitMissionResult(mission=mission_pb2.Mission(id="m-a")),
                pb.SubmitMissionResult(error=refused),
            ]
        )

    def _page(self, page_token: str) -> tuple[list[mission_pb2.Mission], str]:
        """The missions of the page at ``page_token`` (an index), and the next page's token."""
        start = int(page_token or 0)
        end = start + self.page_size
        return self.missions[start:end], str(end) if end < len(self.missions) else ""

    async def ListMissions(self, request: pb.ListMissionsRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("ListMissions", request, context)
        missions, token = self._page(request.page_token)
        return pb.ListMissionsResponse(missions=missions, next_page_token=token)

    async def ListDeadLetters(self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("ListDeadLetters", request, context)
        missions, token = self._page(request.page_token)
        return pb.ListDeadLettersResponse(missions=missions, next_page_token=token)

    async def RedriveDeadLetters(self, request: pb.RedriveDeadLettersRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("RedriveDeadLetters", request, context)
        return pb.RedriveDeadLettersResponse(count=2, mission_ids=["m-1", "m-2"])

    async def PurgeDeadLetters(self, request: pb.PurgeDeadLettersRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("PurgeDeadLetters", request, context)
        return pb.PurgeDeadLettersResponse(count=1, mission_ids=["m-1"])

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        await self._answer("WatchEvents", request, context)
        stream = self.streams.pop(0) if len(self.streams) > 1 else self.streams[0]
        for response in stream.responses:
            yield response
        if stream.error == "hang":
            await asyncio.Event().wait()
        elif isinstance(stream.error, BaseException):
            await abort(context, stream.error)


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """No config file and no MISSIONS_* client variable from the machine running the tests."""
    for option in OPTIONS:
        monkeypatch.delenv(option.variable, raising=False)
    for name in ("MISSIONS_CONFIG", "MISSIONS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def service() -> FakeService:
    # The methods these tests do not use stay unimplemented (UNIMPLEMENTED, as the base answers).
    return FakeService(  # type: ignore[abstract]
        missions=[mission_pb2.Mission(id=MISSION_ID, state=mission_pb2.MISSION_STATE_QUEUED)]
    )


@pytest.fixture
async def address(service: FakeService) -> AsyncIterator[str]:
    server = grpc.aio.server()
    mission_service_pb2_grpc.add_MissionServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture(params=["sync", "async"])
async def run(request: pytest.FixtureRequest, address: str) -> AsyncIterator[Run]:
    """``await run(lambda client: ...)`` with a Client (in a thread) or an AsyncClient; ``items``
    turns either flavour's iterator into a list."""
    if request.param == "sync":
        with Client(address, timeout=5) as client:
            yield lambda use: asyncio.to_thread(use, client)
    else:
        async with AsyncClient(address, timeout=5) as aclient:

            async def use_async(use: Callable[[Any], Any]) -> Any:
                result = use(aclient)
                return await result if inspect.isawaitable(result) else result

            yield use_async


def items(iterator: Iterator[Any] | AsyncIterator[Any]) -> Any:
    if isinstance(iterator, Iterator):
        return list(iterator)

    async def collect() -> list[Any]:
        return [item async for item in iterator]

    return collect()


def test_the_package_exports_both_clients() -> None:
    assert missions.Client is Client
    assert missions.AsyncClient is AsyncClient


@pytest.mark.parametrize(
    ("raised", "kind", "reason"),
    [
        (errors.NotFoundError("no mission m-1"), errors.NotFoundError, "MISSION_NOT_FOUND"),
        (errors.BrokerUnavailableError("broker away"), errors.BrokerUnavailableError, "BROKER_UNAVAILABLE"),
        (errors.UnauthenticatedError("who?"), errors.UnauthenticatedError, "UNAUTHENTICATED"),
        # A reason this client does not know: the class of its code, the reason kept.
        (errors.FailedPreconditionError("not yet", reason="NEW_REASON"), errors.FailedPreconditionError, "NEW_REASON"),
        (RuntimeError("boom"), errors.ServiceError, "INTERNAL"),
    ],
)
async def test_a_status_becomes_its_missions_errors_class(
    run: Run, service: FakeService, raised: BaseException, kind: type[errors.ServiceError], reason: str
) -> None:
    service.fail["GetMission"] = raised
    with pytest.raises(kind) as caught:
        await run(lambda client: client.get(MISSION_ID))
    assert caught.value.reason == reason
    if isinstance(raised, errors.ServiceError):
        assert str(caught.value) == str(raised)


async def test_invalid_argument_names_the_field(run: Run, service: FakeService) -> None:
    service.fail["SubmitMission"] = errors.InvalidArgumentError("payload", "at most 256 KiB")
    with pytest.raises(errors.InvalidArgumentError) as caught:
        await run(lambda client: client.submit("echo", {"text": "x"}))
    assert (caught.value.field, caught.value.description) == ("payload", "at most 256 KiB")
    assert caught.value.reason == "INVALID_ARGUMENT"


async def test_submit_sends_every_option(run: Run, service: FakeService) -> None:
    submitted = await run(
        lambda client: client.submit(
            "echo",
            {"n": 2},
            priority="high",
            labels={"team": "ops"},
            idempotency_key="k",
            max_attempts=5,
            timeout=1.5,
        )
    )
    request = service.requests["SubmitMission"][0]
    assert request.priority == mission_pb2.PRIORITY_HIGH
    assert (dict(request.labels), request.idempotency_key, request.max_attempts) == ({"team": "ops"}, "k", 5)
    assert request.timeout.ToMilliseconds() == 1500
    assert payload_dict(submitted) == {"n": 2}
    assert isinstance(payload_dict(submitted)["n"], int)


async def test_submit_sends_a_correlation_id_when_given_one(run: Run, service: FakeService) -> None:
    await run(lambda client: client.submit("echo", correlation_id="c-42"))
    await run(lambda client: client.submit("echo"))
    first, second = service.metadata["SubmitMission"]
    assert first[CORRELATION_KEY] == "c-42"
    assert CORRELATION_KEY not in second  # the service makes one


async def test_submit_many_gives_each_mission_or_its_error(run: Run) -> None:
    batch = [submit_request("echo"), submit_request("echo", {"text": "x" * 10})]
    results = await run(lambda client: client.submit_many(batch))
    assert results[0].id == "m-a"
    assert isinstance(results[1], errors.InvalidArgumentError)
    assert results[1].field == "payload"


async def test_list_follows_page_tokens(run: Run, service: FakeService) -> None:
    service.missions = [mission_pb2.Mission(id=f"m-{n}") for n in range(5)]
    listed = await run(lambda client: items(client.list(type="echo")))
    assert [found.id for found in listed] == [f"m-{n}" for n in range(5)]
    sent = service.requests["ListMissions"]
    assert [request.page_token for request in sent] == ["", "2", "4"]
    assert {(request.type, request.order_by) for request in sent} == {("echo", "")}  # oldest first


async def test_list_pages_gives_the_services_pages_from_a_page_token(run: Run, service: FakeService) -> None:
    service.missions = [mission_pb2.Mission(id=f"m-{n}") for n in range(5)]
    pages = await run(lambda client: items(client.list_pages(type="echo", page_token="2")))
    assert [[found.id for found in page.missions] for page in pages] == [["m-2", "m-3"], ["m-4"]]
    assert [page.next_page_token for page in pages] == ["4", ""]
    sent = service.requests["ListMissions"]
    assert [(request.page_token, request.type) for request in sent] == [("2", "echo"), ("4", "echo")]


async def test_an_error_keeps_its_status_code(run: Run, service: FakeService) -> None:
    service.fail["GetMission"] = errors.NotFoundError("no mission m-1")
    with pytest.raises(errors.NotFoundError) as caught:
        await run(lambda client: client.get(MISSION_ID))
    assert status_code(caught.value) == grpc.StatusCode.NOT_FOUND
    assert status_code(errors.NotFoundError("made here, not by the client")) == grpc.StatusCode.UNKNOWN


async def test_connect_opens_the_channel_to_the_server(address: str) -> None:
    servers: list[str] = []

    def connect(server: str) -> grpc.Channel:
        servers.append(server)
        return grpc.insecure_channel(address)

    settings = ClientSettings(server="missions.internal:7000", timeout=5)
    with Client(settings=settings, connect=connect) as client:
        assert (await asyncio.to_thread(client.get, MISSION_ID)).id == MISSION_ID
    assert servers == ["missions.internal:7000"]
    with pytest.raises(ValueError, match="not both"):
        Client("other:1", settings=settings)


class PassThrough(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc is untyped
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


async def test_an_async_client_uses_the_channel_connect_opens_as_is(address: str) -> None:
    settings = ClientSettings(server=address, timeout=5)
    async with AsyncClient(settings=settings, connect=grpc.aio.insecure_channel) as client:
        assert (await client.get(MISSION_ID)).id == MISSION_ID
    # A grpc.aio channel takes its interceptors when it is made: connect's cannot get more.
    with pytest.raises(ValueError, match="interceptors"):
        AsyncClient(settings=settings, connect=grpc.aio.insecure_channel, interceptors=[PassThrough()])


async def test_list_sends_its_filters_with_every_page(run: Run, service: FakeService) -> None:
    service.missions = [mission_pb2.Mission(id=f"m-{n}") for n in range(3)]
    since, until = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
    await run(
        lambda client: items(
            client.list(
                labels={"team": "ops", "env": "prod"},
                id_prefix="e8987c7d",
                min_create_time=since,
                max_end_time=until,
                newest_first=True,
            )
        )
    )
    sent = service.requests["ListMissions"]
    assert len(sent) == 2
    for request in sent:
        assert (request.label_selector, request.id_prefix) == ("team=ops,env=prod", "e8987c7d")
        assert request.order_by == "create_time desc"
        assert (request.min_create_time.ToDatetime(UTC), request.max_end_time.ToDatetime(UTC)) == (since, until)
        assert not request.HasField("max_create_time")
        assert not request.HasField("min_end_time")


async def test_dead_letters_sends_its_filters_with_every_page(run: Run, service: FakeService) -> None:
    service.missions = [mission_pb2.Mission(id=f"m-{n}") for n in range(3)]
    listed = await run(
        lambda client: items(client.dead_letters(type="echo", error_type="DeadlineExceeded", labels={"team": "a"}))
    )
    assert [found.id for found in listed] == ["m-0", "m-1", "m-2"]
    sent = service.requests["ListDeadLetters"]
    assert [request.page_token for request in sent] == ["", "2"]
    for request in sent:
        assert (request.type, request.error_type, request.label_selector) == ("echo", "DeadlineExceeded", "team=a")


async def test_bulk_redrive_and_purge_send_their_filter_and_give_the_services_answer(
    run: Run, service: FakeService
) -> None:
    redriven = await run(
        lambda client: client.redrive_dead_letters(error_type="InvalidPayload", max_attempts=5, dry_run=True)
    )
    assert (redriven.count, list(redriven.mission_ids)) == (2, ["m-1", "m-2"])
    [redrive] = service.requests["RedriveDeadLetters"]
    assert (redrive.filter.error_type, redrive.max_attempts, redrive.dry_run) == ("InvalidPayload", 5, True)
    purged = await run(lambda client: client.purge_dead_letters(type="echo", labels={"team": "a", "env": "dev"}))
    assert purged.count == 1
    [purge] = service.requests["PurgeDeadLetters"]
    assert (purge.filter.type, purge.filter.label_selector, purge.dry_run) == ("echo", "team=a,env=dev", False)
    # Longer than other calls' deadline (the client's timeout is 5 s here).
    for name in ("RedriveDeadLetters", "PurgeDeadLetters"):
        [left] = service.time_left[name]
        assert left is not None and left > 60


def _finished(state: mission_pb2.MissionState.ValueType, **fields: Any) -> list[mission_pb2.Mission]:
    return [
        mission_pb2.Mission(id=MISSION_ID, state=mission_pb2.MISSION_STATE_RUNNING, last_sequence=7),
        mission_pb2.Mission(id=MISSION_ID, state=state, last_sequence=9, **fields),
    ]


async def test_result_waits_for_the_final_event_and_gives_ints_back(run: Run, service: FakeService) -> None:
    service.missions = _finished(
        mission_pb2.MISSION_STATE_SUCCEEDED, result=struct({"fail_times": 2, "ratio": 0.5, "items": [1, {"n": 3}]})
    )
    service.streams = [Stream([event(9, events_pb2.EVENT_TYPE_COMPLETED)], "hang")]
    result = await run(lambda client: client.result(MISSION_ID, timeout=10))
    assert result == {"fail_times": 2, "ratio": 0.5, "items": [1, {"n": 3}]}
    assert [type(result["fail_times"]), type(result["items"][1]["n"])] == [int, int]
    watched = service.requests["WatchEvents"][0]
    assert (list(watched.mission_ids), watched.after_sequence) == ([MISSION_ID], 7)


async def test_result_raises_mission_failed_with_its_error(run: Run, service: FakeService) -> None:
    error = mission_pb2.MissionError(type="ValueError", message="bad input")
    service.missions = _finished(mission_pb2.MISSION_STATE_FAILED, error=error)
    service.streams = [Stream([event(9, events_pb2.EVENT_TYPE_DEAD_LETTERED)])]
    with pytest.raises(MissionFailed) as caught:
        await run(lambda client: client.result(MISSION_ID))
    assert caught.value.error.type == "ValueError"
    assert caught.value.mission.state == mission_pb2.MISSION_STATE_FAILED


async def test_result_raises_mission_cancelled(run: Run, service: FakeService) -> None:
    service.missions = _finished(mission_pb2.MISSION_STATE_CANCELLED)
    service.streams = [Stream([event(9, events_pb2.EVENT_TYPE_CANCELLED)])]
    with pytest.raises(MissionCancelled):
        await run(lambda client: client.result(MISSION_ID))


async def test_wait_raises_timeout_error(run: Run, service: FakeService) -> None:
    service.streams = [Stream([heartbeat(3)], "hang")]
    with pytest.raises(TimeoutError):
        await run(lambda client: client.wait(MISSION_ID, timeout=0.5))


async def test_watch_resumes_after_unavailable_and_a_slow_cut_off_with_no_gap_or_duplicate(
    run: Run, service: FakeService
) -> None:
    service.streams = [
        Stream([event(1), event(2), heartbeat(2)], errors.UnavailableError("connection reset")),
        # The server replays from after_sequence: 2 again is dropped, not delivered twice.
        Stream([event(2), event(3), event(4)], errors.SubscriberLaggingError(6)),
        Stream([heartbeat(6)], errors.ServiceStoppingError(6)),
        Stream([event(8)]),
    ]
    events = await run(
        lambda client: items(client.watch(mission_ids=[MISSION_ID], types=[events_pb2.EVENT_TYPE_PROGRESS]))
    )
    assert [delivered.sequence for delivered in events] == [1, 2, 3, 4, 8]
    sent = service.requests["WatchEvents"]
    assert [request.after_sequence if request.HasField("after_sequence") else None for request in sent] == [
        None,
        2,
        6,
        6,
    ]
    assert all(list(request.types) == [events_pb2.EVENT_TYPE_PROGRESS] for request in sent)


async def test_watch_raises_what_a_retry_cannot_fix(run: Run, service: FakeService) -> None:
    service.streams = [Stream([event(1)], errors.LogTruncatedError(5))]
    with pytest.raises(errors.LogTruncatedError) as caught:
        await run(lambda client: items(client.watch(after_sequence=0)))
    assert caught.value.oldest_sequence == 5
    assert len(service.requests["WatchEvents"]) == 1


def test_settings_come_from_the_argument_then_the_variable_then_the_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    config = tmp_path / "missionctl.toml"
    config.write_text('timeout = 3\n[profiles.prod]\nserver = "prod:50051"\n')

    def resolved(**given: Any) -> tuple[str, float]:
        with Client(config=config, profile="prod", **given) as client:
            return client.settings.server, client.settings.timeout

    assert resolved() == ("prod:50051", 3.0)
    monkeypatch.setenv("MISSIONS_SERVER", "variable:1")
    assert resolved() == ("variable:1", 3.0)
    assert resolved(server="argument:2", timeout=1.5) == ("argument:2", 1.5)


def test_submit_request_carries_a_delay_and_an_aware_due_time() -> None:
    due = datetime(2026, 12, 8, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    request = submit_request("echo", delay=2.5, due_time=due)
    assert request.delay.ToTimedelta() == timedelta(seconds=2.5)
    assert request.due_time.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        submit_request("echo", due_time=datetime(2026, 12, 8, 10, 0))
