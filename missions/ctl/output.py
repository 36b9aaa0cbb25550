"""Where missionctl writes: rich text for people, or proto JSON (``-o json``, ``-o jsonl``) for scripts.

``-o json`` prints each response as one JSON document on one line. ``-o jsonl`` prints one
item per line, each an object whose single key says what it holds (``mission``, ``event``,
``worker``, ``stats``, ``next_page_token``), so a stream of mixed items stays easy to filter.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console

from missions.client._payloads import plain
from missions.ctl import render
from missions.v1 import events_pb2
from missions.v1 import mission_service_pb2 as pb

__all__ = ["Output", "proto_dict", "warn"]

# Piped text feeds tools and files: let tables be as wide as their content instead of
# cutting ids to fit rich's default of 80 columns.
_PIPE_WIDTH = 1000

MissionResponse = (
    pb.GetMissionResponse | pb.SubmitMissionResponse | pb.CancelMissionResponse | pb.RedriveMissionResponse
)
MissionsResponse = pb.ListMissionsResponse | pb.ListDeadLettersResponse


def proto_dict(message: Message) -> dict[str, Any]:
    """A message as proto JSON: field names as in the .proto, enums by name, 64-bit integers as
    strings, and integral numbers within 2^53 (a payload's, a result's) as integers."""
    converted: dict[str, Any] = plain(json_format.MessageToDict(message, preserving_proto_field_name=True))
    return converted


class _Console(Console):
    """A rich console that leaves a closed stdout to ``app.main``, as every other write does
    (rich's own answer is to exit 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to draw, e.g. when a live display stops
        raise BrokenPipeError


def console_for(color: str) -> Console:
    """A console on stdout; ``color`` is auto (rich decides: a terminal, NO_COLOR, FORCE_COLOR), always or never."""
    console = _Console(highlight=False)
    if color == "never":
        console = _Console(highlight=False, color_system=None)
    elif color == "always":
        # An explicit colour system colours a pipe too (for `less -R`) without making it a terminal,
        # so live widgets stay off; the flag beats NO_COLOR.
        console = _Console(highlight=False, color_system="auto" if console.is_terminal else "standard", no_color=False)
    if not console.is_terminal:
        console.width = _PIPE_WIDTH
    return console


class Output:
    """Writes responses as rich text, JSON documents or JSON lines.

    Args:
        mode: text, json or jsonl.
        console: where text goes; default: stdout, coloured as ``color`` says.
        color: auto, always or never.
    """

    def __init__(self, mode: str = "text", *, color: str = "auto", console: Console | None = None) -> None:
        self.mode = mode
        self.console = console if console is not None else console_for(color)

    @property
    def json(self) -> bool:
        """Whether output is for machines (json or jsonl)."""
        return self.mode != "text"

    @property
    def live(self) -> bool:
        """Whether to draw live widgets (a progress bar, a live table): text output to a terminal."""
        return not self.json and self.console.is_terminal

    def record(self, value: dict[str, Any]) -> None:
        """Print one JSON object on one line."""
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    def message(self, message: Message) -> None:
        """Print one response message as one JSON line."""
        self.record(proto_dict(message))

    def _items(self, key: str, messages: Iterable[Message]) -> None:
        for message in messages:
            self.record({key: proto_dict(message)})

    def mission(self, response: MissionResponse) -> None:
        if self.json:  # {"mission": ...} is already one item
            self.message(response)
        else:
            self.console.print(render.key_values(render.mission_rows(response.mission)))

    def missions(self, response: MissionsResponse, *, last_error: bool = False) -> None:
        """A page of missions (every page with --all); ``last_error`` adds the ERROR column."""
        if self.mode == "json":
            self.message(response)
            return
        if self.mode == "jsonl":
            self._items("mission", response.missions)
            if response.next_page_token:
                self.record({"next_page_token": response.next_page_token})
            return
        if response.missions:
            self.console.print(render.missions_table(response.missions, last_error=last_error))
        else:
            self.console.print("no dead-lettered missions" if last_error else "no missions")
        if response.next_page_token:
            warn(f"more missions: add --page-token {response.next_page_token} (or --all)")

    def event(self, event: events_pb2.MissionEvent) -> None:
        if self.json:  # {"event": ...}, as WatchEvents sends it
            self.message(pb.WatchEventsResponse(event=event))
        else:
            self.console.print(render.event_line(event), soft_wrap=True)

    def workers(self, response: pb.ListWorkersResponse) -> None:
        if self.mode == "json":
            self.message(response)
        elif self.mode == "jsonl":
            self._items("worker", response.workers)
        elif response.workers:
            self.console.print(render.workers_table(response.workers, datetime.now(UTC)))
        else:
            self.console.print("no workers")

    def stats(self, response: pb.GetStatsResponse) -> None:
        if self.mode == "json":
            self.message(response)
        elif self.mode == "jsonl":
            self._items("stats", [response])
        else:
            self.console.print(render.key_values(render.stats_rows(response)))
            if response.mission_types:
                self.console.print()
                self.console.print(render.mission_types_table(response))

    def bulk(
        self,
        response: pb.RedriveDeadLettersResponse | pb.PurgeDeadLettersResponse,
        verbs: tuple[str, str],
        *,
        dry_run: bool,
    ) -> None:
        """What a bulk operation on dead letters took: how many, and the ids it names; ``verbs``
        says what it does and did ("redrive", "redriven")."""
        if self.json:
            self.record({**proto_dict(response), "dry_run": dry_run})
            return
        what = f"{response.count} dead letter(s)"
        said = f"would {verbs[0]} {what}" if dry_run else f"{what} {verbs[1]}"
        self.console.print(said + (":" if response.mission_ids else ""))
        for mission_id in response.mission_ids:
            self.console.print(f"  {mission_id}")
        if response.count > len(response.mission_ids):
            self.console.print(f"  ... and {response.count - len(response.mission_ids)} more")


def warn(message: str) -> None:
    """Print a note or an error to stderr."""
    print(message, file=sys.stderr, flush=True)
