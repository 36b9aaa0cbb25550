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
            field.metadata["help"],
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
    # Limits of time are timedeltas, given in whole seconds.
    timeout, delay = (timedelta(seconds=values.pop(name)) for name in ("max_timeout", "max_delay"))
    return Limits(max_timeout=timeout, max_delay=delay, **values)
