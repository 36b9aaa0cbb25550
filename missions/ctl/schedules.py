"""``missionctl schedule create|list|get|pause|resume|delete``: recurring schedules, through the
client's schedule methods, printed as key-values and tables (or their JSON)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rich.table import Table
from rich.text import Text

from missions.client import Client
from missions.client._payloads import struct_to_dict
from missions.ctl import enums, render
from missions.ctl.output import Output, proto_dict
from missions.v1 import schedule_pb2

__all__ = ["add_schedule"]

S = schedule_pb2
_EXIT_OK = 0
_STATES = {S.SCHEDULE_STATE_ACTIVE: "ACTIVE", S.SCHEDULE_STATE_PAUSED: "PAUSED"}


def add_schedule(
    add: Callable[..., argparse.ArgumentParser], shared: dict[str, Any], payload: Any, label: Any, seconds: Any
) -> None:
    """Register ``schedule`` and its sub-commands, each with the ``shared`` parser options (the
    global flags, the help format); ``payload``, ``label`` and ``seconds`` are the argument
    types ``submit`` uses, so a schedule's missions take the same flags."""
    schedule = add(
        "schedule",
        help="recurring schedules: create, list, get, pause, resume, delete",
        description="Recurring schedules: each submits a mission of its template at every firing time, by a"
        " cron expression (in a time zone) or at a fixed interval.\n\n"
        "examples:\n"
        "  missionctl schedule create report --cron '0 6 * * 1-5' --time-zone Europe/Berlin\n"
        "  missionctl schedule create echo --every 30 --payload '{\"ping\": true}' --id heartbeat\n"
        "  missionctl schedule list\n"
        "  missionctl schedule pause heartbeat",
    )
    subparsers = schedule.add_subparsers(dest="schedule_command", metavar="COMMAND", required=True)
    verb: Callable[..., argparse.ArgumentParser] = functools.partial(subparsers.add_parser, **shared)
    create = verb("create", help="create a schedule", description="Create a schedule and print it.")
    create.add_argument("type", metavar="TYPE", help="handler name of its missions, e.g. echo")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="5-field cron expression, e.g. '*/5 * * * *'")
    when.add_argument("--every", type=seconds, metavar="SECONDS", help="fire every this many seconds")
    create.add_argument("--time-zone", metavar="TZ", help="IANA time zone of --cron, e.g. Europe/Berlin; default UTC")
    create.add_argument("--id", metavar="ID", help="the schedule's id (lowercase letters, digits, '-'); default: made")
    create.add_argument(
        "--overlap", choices=("skip", "allow"), help="while the previous mission runs: skip (default) or allow"
    )
    create.add_argument(
        "--catch-up",
        choices=("one", "skip"),
        help="firings missed while no service ran: one late firing (default) or skip them",
    )
    create.add_argument("--payload", type=payload, metavar="JSON", help="each mission's payload; default {}")
    create.add_argument("--priority", type=str.lower, choices=enums.choices(enums.PRIORITY), help="default: normal")
    create.add_argument("--label", type=label, action="append", metavar="KEY=VALUE", help="repeatable")
    create.set_defaults(command=_create)
    listing = verb("list", help="list schedules", description="List the schedules, oldest first.")
    listing.set_defaults(command=_list)
    for name, what, action in (
        ("get", "show a schedule", Client.get_schedule),
        ("pause", "stop a schedule firing (its creator or an admin)", Client.pause_schedule),
        ("resume", "let a paused schedule fire again", Client.resume_schedule),
        ("delete", "delete a schedule; its missions stay", Client.delete_schedule),
    ):
        one = verb(name, help=what, description=f"{what[0].upper()}{what[1:]}.")
        one.add_argument("id", metavar="ID", help="the schedule's id")
        one.set_defaults(command=_on_one(action))


def _create(client: Client, out: Output, args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "cron": args.cron or "",
        "time_zone": args.time_zone or "",
        "schedule_id": args.id or "",
        "labels": dict(args.label or ()),
    }
    for option, value in (("interval", args.every), ("overlap", args.overlap), ("catch_up", args.catch_up)):
        if value is not None:
            options[option] = value
    if args.priority:
        options["priority"] = args.priority
    payload = None if args.payload is None else struct_to_dict(args.payload)
    _show(out, client.create_schedule(args.type, payload, **options))
    return _EXIT_OK


def _list(client: Client, out: Output, args: argparse.Namespace) -> int:
    schedules = list(client.list_schedules())
    if out.mode == "json":
        out.record({"schedules": [proto_dict(schedule) for schedule in schedules]})
    elif out.mode == "jsonl":
        for schedule in schedules:
            out.record({"schedule": proto_dict(schedule)})
    elif schedules:
        out.console.print(_table(schedules))
    else:
        out.console.print("no schedules")
    return _EXIT_OK


def _on_one(action: Callable[[Client, str], schedule_pb2.Schedule]) -> Callable[..., int]:
    """The command that applies ``action`` to the schedule ``args.id`` names and shows the result."""

    def run(client: Client, out: Output, args: argparse.Namespace) -> int:
        _show(out, action(client, args.id))
        return _EXIT_OK

    return run


def _show(out: Output, schedule: schedule_pb2.Schedule) -> None:
    if out.json:
        out.record({"schedule": proto_dict(schedule)})
    else:
        out.console.print(render.key_values(_rows(schedule)))


def _when(schedule: schedule_pb2.Schedule) -> str:
    if schedule.cron:
        return f"cron {schedule.cron} ({schedule.time_zone or 'UTC'})"
    return f"every {render.seconds(schedule.interval)}"


def _rows(schedule: schedule_pb2.Schedule) -> Iterator[tuple[str, str]]:
    template = schedule.mission_template
    yield "id", schedule.id
    yield "state", _STATES.get(schedule.state, str(schedule.state))
    yield "fires", _when(schedule)
    yield "mission type", template.type
    yield "payload", render.compact(template.payload)
    yield "labels", ", ".join(f"{key}={value}" for key, value in sorted(template.labels.items()))
    yield "overlap", S.OverlapPolicy.Name(schedule.overlap_policy).removeprefix("OVERLAP_POLICY_").lower()
    yield "catch up", S.CatchUpPolicy.Name(schedule.catch_up_policy).removeprefix("CATCH_UP_POLICY_").lower()
    yield "next fire time", render.time(schedule.next_fire_time)
    yield "last fire time", render.time(schedule.last_fire_time)
    yield "last mission", schedule.last_mission_id
    yield "fired", str(schedule.fire_count)
    yield "skipped", str(schedule.skip_count)
    yield "created by", schedule.created_by
    yield "create time", render.time(schedule.create_time)


def _table(schedules: Iterable[schedule_pb2.Schedule]) -> Table:
    table = Table(box=None, header_style="bold")
    for header in ("ID", "STATE", "FIRES", "TYPE", "NEXT", "FIRED", "SKIPPED"):
        table.add_column(header, no_wrap=header == "ID")
    for schedule in schedules:
        table.add_row(
            Text(schedule.id),
            _STATES.get(schedule.state, str(schedule.state)),
            Text(_when(schedule)),
            Text(schedule.mission_template.type),
            render.time(schedule.next_fire_time),
            str(schedule.fire_count),
            str(schedule.skip_count),
        )
    return table
