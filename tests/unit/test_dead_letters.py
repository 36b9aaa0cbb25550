"""Dead letters: listing them, redriving and purging one or all that match a filter."""

from __future__ import annotations

import pathlib
from typing import Any

import grpc
import pytest

from mission_service import commands
from missions.events import new_event
from missions.v1 import events_pb2, mission_pb2
from missions.v1 import mission_service_pb2 as pb
from tests.unit.service_harness import (
    TIMEOUT,
    Service,
    as_principal,
    dead_letter,
    published_events,
    running_service,
    start_attempt,
    tokens_file,
    violated_fields,
    worker_event,
)

E = events_pb2
M = mission_pb2


async def test_cancel_a_dead_lettered_mission_is_failed_precondition(service: Service) -> None:
    mission = await dead_letter(service, await service.submit())
    published = len(service.broker.log)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.CancelMission(pb.CancelMissionRequest(mission_id=mission.id), timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "MISSION_STATE_FAILED" in (raised.value.details() or "")
    assert len(service.broker.log) == published


async def test_redrive_a_dead_lettered_mission_queues_it_again(service: Service) -> None:
    submitted = await service.submit(priority=M.PRIORITY_HIGH)
    await dead_letter(service, submitted)
    response = await service.stub.RedriveMission(pb.RedriveMissionRequest(mission_id=submitted.id), timeout=TIMEOUT)
    mission = response.mission
    assert mission.state == M.MISSION_STATE_QUEUED
    assert (mission.redrive_count, mission.attempt, mission.max_attempts) == (1, 0, 3)
    assert not mission.dead_lettered
    assert not mission.HasField("end_time")
    # Read-your-writes, as for a submission.
    got = await service.stub.GetMission(pb.GetMissionRequest(mission_id=submitted.id), timeout=TIMEOUT)
    assert got.mission == mission
    [redriven] = published_events(service, E.EVENT_TYPE_REDRIVEN)
    assert (service.broker.work[-1][0].id, service.broker.work[-1][2]) == (redriven.id, len(service.broker.log))
    assert redriven.mission_id == submitted.id
    assert redriven.redriven.requested_by.startswith("ipv4:127.0.0.1:")
    assert redriven.redriven.redrive_count == 1
    fresh = redriven.redriven.mission
    assert (fresh.state, fresh.attempt, fresh.redrive_count, fresh.dead_lettered) == (
        M.MISSION_STATE_QUEUED,
        0,
        1,
        False,
    )
    assert not fresh.HasField("error")
    assert redriven.correlation_id == submitted.correlation_id
    # The work message keeps the mission's priority.
    assert service.broker.priorities[-1] == M.PRIORITY_HIGH
    dead = await service.stub.ListDeadLetters(pb.ListDeadLettersRequest(), timeout=TIMEOUT)
    assert list(dead.missions) == []


async def test_redrive_with_a_new_attempt_budget_and_again_after_a_second_dead_letter(service: Service) -> None:
    submitted = await service.submit()
    await dead_letter(service, submitted)
    first = await service.stub.RedriveMission(
        pb.RedriveMissionRequest(mission_id=submitted.id, max_attempts=7), timeout=TIMEOUT
    )
    assert (first.mission.max_attempts, first.mission.redrive_count) == (7, 1)
    await dead_letter(service, first.mission)
    second = await service.stub.RedriveMission(
        pb.RedriveMissionRequest(mission_id=submitted.id, max_attempts=100), timeout=TIMEOUT
    )
    assert (second.mission.state, second.mission.max_attempts, second.mission.redrive_count) == (
        M.MISSION_STATE_QUEUED,
        100,
        2,
    )
    assert [event.redriven.redrive_count for event in published_events(service, E.EVENT_TYPE_REDRIVEN)] == [1, 2]


@pytest.mark.parametrize("state", ["queued", "running", "succeeded", "cancelled", "failed, not yet dead-lettered"])
async def test_redrive_a_mission_that_is_not_dead_lettered_is_failed_precondition(service: Service, state: str) -> None:
    mission = await service.submit()
    if state == "running":
        await start_attempt(service, mission)
    elif state == "succeeded":
        await service.run_to_completion(mission)
    elif state == "cancelled":
        await service.stub.CancelMission(pb.CancelMissionRequest(mission_id=mission.id), timeout=TIMEOUT)
    elif state.startswith("failed"):
        await start_attempt(service, mission)
        failed = worker_event(mission, E.EVENT_TYPE_FAILED)
        failed.failed.error.type = "NonRetryableError"
        await service.worker_publishes(failed)
    published = len(service.broker.log)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.RedriveMission(pb.RedriveMissionRequest(mission_id=mission.id), timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not dead-lettered" in (raised.value.details() or "")
    assert len(service.broker.log) == published


@pytest.mark.parametrize("max_attempts", [-1, 101])
async def test_redrive_with_an_attempt_budget_out_of_range_is_invalid_argument(
    service: Service, max_attempts: int
) -> None:
    mission = await dead_letter(service, await service.submit())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.RedriveMission(
            pb.RedriveMissionRequest(mission_id=mission.id, max_attempts=max_attempts), timeout=TIMEOUT
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("max_attempts: ")
    assert violated_fields(raised.value) == ["max_attempts"]
    assert published_events(service, E.EVENT_TYPE_REDRIVEN) == []
    stored = service.store.get(mission.id)
    assert stored is not None
    assert stored.dead_lettered


async def test_list_dead_letters_lists_only_dead_lettered_missions_page_by_page(service: Service) -> None:
    submitted = [await service.submit(type="echo" if n % 2 else "sleep") for n in range(6)]
    for index in (0, 1, 3, 5):
        await dead_letter(service, submitted[index])
    await service.run_to_completion(submitted[2])
    await start_attempt(service, submitted[4])
    dead_ids = [submitted[index].id for index in (0, 1, 3, 5)]
    pages: list[list[str]] = []
    token = ""
    while True:
        response = await service.stub.ListDeadLetters(
            pb.ListDeadLettersRequest(page_size=3, page_token=token), timeout=TIMEOUT
        )
        assert all(mission.dead_lettered for mission in response.missions)
        pages.append([mission.id for mission in response.missions])
        token = response.next_page_token
        if not token:
            break
    assert pages == [dead_ids[0:3], dead_ids[3:4]]
    echo = await service.stub.ListDeadLetters(pb.ListDeadLettersRequest(type="echo"), timeout=TIMEOUT)
    assert [mission.id for mission in echo.missions] == [submitted[1].id, submitted[3].id, submitted[5].id]


async def test_page_tokens_of_list_missions_and_list_dead_letters_are_not_interchangeable(service: Service) -> None:
    submitted = [await service.submit() for _ in range(3)]
    for mission in submitted:
        await dead_letter(service, mission)
    listed = await service.stub.ListMissions(pb.ListMissionsRequest(page_size=1), timeout=TIMEOUT)
    assert listed.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.ListDeadLetters(
            pb.ListDeadLettersRequest(page_size=1, page_token=listed.next_page_token), timeout=TIMEOUT
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == ["page_token"]
    dead = await service.stub.ListDeadLetters(pb.ListDeadLettersRequest(page_size=1), timeout=TIMEOUT)
    assert dead.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.ListMissions(
            pb.ListMissionsRequest(page_size=1, page_token=dead.next_page_token), timeout=TIMEOUT
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A dead-letter token is bound to its type filter too.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.ListDeadLetters(
            pb.ListDeadLettersRequest(page_size=1, page_token=dead.next_page_token, type="echo"), timeout=TIMEOUT
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _dead_letters(service: Service, **filters: Any) -> list[str]:
    listed = await service.stub.ListDeadLetters(pb.ListDeadLettersRequest(**filters), timeout=TIMEOUT)
    return [mission.id for mission in listed.missions]


async def _three_kinds(service: Service) -> tuple[M.Mission, M.Mission, M.Mission]:
    """Dead letters of three kinds: an echo timing out, an echo with a bad payload labelled
    team=a, and a resize timing out labelled team=a."""
    timed_out = await dead_letter(service, await service.submit(), "DeadlineExceeded")
    bad = await dead_letter(service, await service.submit(labels={"team": "a"}), "InvalidPayload")
    resize = await dead_letter(service, await service.submit(type="resize", labels={"team": "a"}), "DeadlineExceeded")
    return timed_out, bad, resize


async def test_list_dead_letters_by_error_type_and_labels_binds_the_token_to_them(service: Service) -> None:
    timed_out, bad, resize = await _three_kinds(service)
    assert await _dead_letters(service, error_type="DeadlineExceeded") == [timed_out.id, resize.id]
    assert await _dead_letters(service, label_selector="team=a") == [bad.id, resize.id]
    assert await _dead_letters(service, type="echo", label_selector="team=a") == [bad.id]
    first = await service.stub.ListDeadLetters(
        pb.ListDeadLettersRequest(page_size=1, error_type="DeadlineExceeded"), timeout=TIMEOUT
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.ListDeadLetters(
            pb.ListDeadLettersRequest(page_size=1, page_token=first.next_page_token), timeout=TIMEOUT
        )
    assert violated_fields(raised.value) == ["page_token"]
    second = await service.stub.ListDeadLetters(
        pb.ListDeadLettersRequest(page_size=1, page_token=first.next_page_token, error_type="DeadlineExceeded"),
        timeout=TIMEOUT,
    )
    assert [mission.id for mission in second.missions] == [resize.id]


async def test_a_dry_run_names_the_matching_dead_letters_and_changes_nothing(service: Service) -> None:
    timed_out, _, resize = await _three_kinds(service)
    published = len(service.broker.log)
    request = pb.DeadLetterFilter(error_type="DeadlineExceeded")
    redrive = await service.stub.RedriveDeadLetters(
        pb.RedriveDeadLettersRequest(filter=request, dry_run=True), timeout=TIMEOUT
    )
    purge = await service.stub.PurgeDeadLetters(
        pb.PurgeDeadLettersRequest(filter=request, dry_run=True), timeout=TIMEOUT
    )
    for response in (redrive, purge):
        assert (response.count, list(response.mission_ids)) == (2, [timed_out.id, resize.id])
    assert len(service.broker.log) == published
    assert len(await _dead_letters(service)) == 3


async def test_redrive_dead_letters_redrives_those_the_filter_takes(service: Service) -> None:
    timed_out, bad, resize = await _three_kinds(service)
    response = await service.stub.RedriveDeadLetters(
        pb.RedriveDeadLettersRequest(filter=pb.DeadLetterFilter(label_selector="team=a"), max_attempts=5),
        timeout=TIMEOUT,
    )
    assert (response.count, list(response.mission_ids)) == (2, [bad.id, resize.id])
    redriven = published_events(service, E.EVENT_TYPE_REDRIVEN)
    assert [event.mission_id for event in redriven] == [bad.id, resize.id]
    assert {event.redriven.mission.max_attempts for event in redriven} == {5}
    assert all(event.redriven.requested_by.startswith("ipv4:127.0.0.1:") for event in redriven)
    # Each was dispatched to its type's work queue, as by RedriveMission.
    assert [work[0].id for work in service.broker.work[-2:]] == [event.id for event in redriven]
    for mission_id in (bad.id, resize.id):
        stored = service.store.get(mission_id)
        assert stored is not None
        assert (stored.state, stored.dead_lettered) == (M.MISSION_STATE_QUEUED, False)
    assert await _dead_letters(service) == [timed_out.id]
    again = await service.stub.RedriveDeadLetters(
        pb.RedriveDeadLettersRequest(filter=pb.DeadLetterFilter(label_selector="team=a")), timeout=TIMEOUT
    )
    assert again.count == 0


async def test_redrive_dead_letters_goes_through_more_than_a_page(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "_BULK_PAGE", 2)
    monkeypatch.setattr(commands, "_SHOWN_IDS", 3)
    dead = [await dead_letter(service, await service.submit()) for _ in range(5)]
    response = await service.stub.RedriveDeadLetters(pb.RedriveDeadLettersRequest(), timeout=TIMEOUT)
    assert (response.count, list(response.mission_ids)) == (5, [mission.id for mission in dead[:3]])
    assert [event.mission_id for event in published_events(service, E.EVENT_TYPE_REDRIVEN)] == [
        mission.id for mission in dead
    ]
    assert await _dead_letters(service) == []


async def test_purge_dead_letters_leaves_them_failed_not_listed_and_not_redrivable(service: Service) -> None:
    timed_out, bad, resize = await _three_kinds(service)
    response = await service.stub.PurgeDeadLetters(
        pb.PurgeDeadLettersRequest(filter=pb.DeadLetterFilter(type="echo")), timeout=TIMEOUT
    )
    assert (response.count, list(response.mission_ids)) == (2, [timed_out.id, bad.id])
    purged = published_events(service, E.EVENT_TYPE_PURGED)
    assert [event.mission_id for event in purged] == [timed_out.id, bad.id]
    assert all(event.purged.requested_by.startswith("ipv4:127.0.0.1:") for event in purged)
    stored = service.store.get(bad.id)
    assert stored is not None
    assert (stored.state, stored.dead_lettered, stored.error.type) == (M.MISSION_STATE_FAILED, False, "InvalidPayload")
    assert await _dead_letters(service) == [resize.id]
    stats = await service.stub.GetStats(pb.GetStatsRequest(), timeout=TIMEOUT)
    assert stats.dead_letter_depth == 1  # what ListDeadLetters lists
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.RedriveMission(pb.RedriveMissionRequest(mission_id=bad.id), timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Purged, a failed mission is over: the reaper never takes it for one stranded
    # between its FAILED and DEAD_LETTERED.
    assert service.store.stranded(10) == []


async def test_a_purge_that_comes_second_changes_nothing_a_reader_sees(service: Service) -> None:
    mission = await dead_letter(service, await service.submit())
    first, second = (new_event(mission, E.EVENT_TYPE_PURGED, source="elsewhere", correlation_id="c") for _ in range(2))
    await service.worker_publishes(first, second)
    assert service.store.duplicates_after(0) == {service.broker.log[-1].sequence}


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.RedriveDeadLettersRequest(filter=pb.DeadLetterFilter(label_selector="team")), "filter.label_selector"),
        (pb.RedriveDeadLettersRequest(max_attempts=101), "max_attempts"),
        (pb.PurgeDeadLettersRequest(filter=pb.DeadLetterFilter(label_selector="=a")), "filter.label_selector"),
    ],
)
async def test_a_bad_bulk_request_is_invalid_argument_naming_the_field(
    service: Service, request_: pb.RedriveDeadLettersRequest | pb.PurgeDeadLettersRequest, field: str
) -> None:
    await dead_letter(service, await service.submit())
    call = (
        service.stub.RedriveDeadLetters
        if isinstance(request_, pb.RedriveDeadLettersRequest)
        else service.stub.PurgeDeadLetters
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request_, timeout=TIMEOUT)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == [field]
    assert len(await _dead_letters(service)) == 1


@pytest.mark.parametrize("role", ["reader", "submitter"])
async def test_only_an_admin_may_redrive_or_purge_dead_letters_even_dry(tmp_path: pathlib.Path, role: str) -> None:
    tokens = tokens_file(tmp_path, someone=role, root="admin")
    async with running_service(tokens_file=tokens) as service:
        for call, request in (
            (service.stub.RedriveDeadLetters, pb.RedriveDeadLettersRequest(dry_run=True)),
            (service.stub.PurgeDeadLetters, pb.PurgeDeadLettersRequest(dry_run=True)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(request, metadata=as_principal("someone"), timeout=TIMEOUT)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            allowed = await call(request, metadata=as_principal("root"), timeout=TIMEOUT)
            assert allowed.count == 0
