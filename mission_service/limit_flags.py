"""Command-line options for the input limits: one ``--<limit>`` per ``Limits`` field (missions/options.py).

Each flag defaults to its ``MISSIONS_<LIMIT>`` variable, else to the ``Limits`` default.
A value that is not a positive integer, from the command line or the environment, stops
the process at start-up with a message naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import timedelta

from mission_service.limits import Limits, limit_flag
from missions.options import Option, add_options, integer

__all__ = ["LIMITS", "add_limit_options", "limits_from_args"]

# What each limit bounds.
_HELP = {
    "max_request_bytes": "largest request message in bytes; larger ones get RESOURCE_EXHAUSTED",
    "max_type_length": "characters of a mission type",
    "max_payload_bytes": "serialized size of a payload in bytes",
    "max_payload_depth": "nesting levels of a payload",
    "max_labels": "labels per mission",
    "max_label_key_length": "characters of a label key",
    "max_label_value_length": "characters of a label value",
    "max_idempotency_key_length": "characters of an idempotency key",
    "max_mission_id_length": "characters of a mission id in a request",
    "default_max_attempts": "attempts of a mission submitted with max_attempts 0",
    "max_max_attempts": "largest max_attempts a request may ask for",
    "max_timeout": "longest per-attempt timeout a request may ask for, in seconds",
    "default_page_size": "page size of a list request with page_size 0",
    "max_page_size": "largest page of a list; larger page sizes are lowered to it",
    "max_watch_mission_ids": "mission ids in one WatchEvents filter",
    "max_watch_mission_types": "mission types in one WatchEvents filter",
    "max_label_selector_pairs": "key=value pairs in one label selector",
    "max_batch_missions": "missions in one SubmitMissions call",
}

# (smaller, larger): the first limit must not exceed the second.
_ORDERED = (
    ("default_max_attempts", "max_max_attempts"),
    ("default_page_size", "max_page_size"),
    # A request carries its payload plus the other fields, so it needs more room.
    ("max_payload_bytes", "max_request_bytes"),
)


def _plain(value: int | timedelta) -> int:
    """A limit as its flag takes it: timedeltas in whole seconds."""
    return int(value.total_seconds()) if isinstance(value, timedelta) else value


def _options() -> tuple[Option, ...]:
    defaults = Limits()
    return tuple(
        Option(
            limit_flag(field.name),
            f"MISSIONS_{field.name.upper()}",
            _HELP[field.name],
            integer(1),
            default=str(_plain(getattr(defaults, field.name))),
            metavar="N",
        )
        for field in dataclasses.fields(Limits)
    )


LIMITS = _options()


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """Add one flag per input limit, in a group of its own."""
    add_options(
        parser.add_argument_group("input limits", "requests beyond a limit fail before anything is queued"), LIMITS
    )


def limits_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Limits:
    """The Limits the parsed flags ask for; ``parser.error`` names a flag that contradicts another."""
    values: dict[str, int] = {field.name: getattr(args, field.name) for field in dataclasses.fields(Limits)}
    for smaller, larger in _ORDERED:
        if values[smaller] > values[larger]:
            parser.error(
                f"{limit_flag(smaller)} ({values[smaller]}) must not exceed {limit_flag(larger)} ({values[larger]})"
            )
    timeout = timedelta(seconds=values.pop("max_timeout"))
    return Limits(max_timeout=timeout, **values)
