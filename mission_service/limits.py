"""Input limits: what each request field may hold, and how a message names a limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from missions.errors import InvalidArgumentError

__all__ = ["Limits", "check_count", "limit_flag", "named_limit"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits, enforced before anything is queued.

    Each field is a ``--<field-name>`` flag of mission-service backed by a
    ``MISSIONS_<FIELD_NAME>`` variable (mission_service/limit_flags.py), and its metadata's
    ``help`` says what it bounds: the one description, which --help and
    docs/configuration.md show with the default.
    """

    max_request_bytes: int = field(
        default=1024 * 1024,
        metadata={
            "help": "largest request message in bytes (the gRPC max receive message length);"
            " larger ones get RESOURCE_EXHAUSTED"
        },
    )
    max_type_length: int = field(
        default=128, metadata={"help": "characters of a mission type (also in a watch filter)"}
    )
    max_payload_bytes: int = field(default=256 * 1024, metadata={"help": "serialized size of a payload in bytes"})
    max_payload_depth: int = field(default=32, metadata={"help": "nesting levels of a payload"})
    max_labels: int = field(default=64, metadata={"help": "labels per mission"})
    max_label_key_length: int = field(
        default=63, metadata={"help": "characters of a label key (also in a label selector)"}
    )
    max_label_value_length: int = field(
        default=256, metadata={"help": "characters of a label value (also in a label selector)"}
    )
    max_idempotency_key_length: int = field(default=256, metadata={"help": "characters of an idempotency key"})
    max_mission_id_length: int = field(default=128, metadata={"help": "characters of a mission id in a request"})
    default_max_attempts: int = field(
        default=3, metadata={"help": "attempts of a mission submitted with max_attempts 0"}
    )
    max_max_attempts: int = field(default=100, metadata={"help": "largest max_attempts a request may ask for"})
    max_timeout: timedelta = field(
        default=timedelta(days=1), metadata={"help": "longest per-attempt timeout a request may ask for, in seconds"}
    )
    max_delay: timedelta = field(
        default=timedelta(days=365),
        metadata={"help": "how far ahead of its submission a mission may be due (due_time, delay), in seconds"},
    )
    default_page_size: int = field(default=100, metadata={"help": "page size of a list request with page_size 0"})
    max_page_size: int = field(
        default=1000, metadata={"help": "largest page of a list; larger page sizes are lowered to it"}
    )
    max_watch_mission_ids: int = field(default=1000, metadata={"help": "mission ids in one WatchEvents filter"})
    max_watch_mission_types: int = field(default=100, metadata={"help": "mission types in one WatchEvents filter"})
    max_label_selector_pairs: int = field(default=16, metadata={"help": "key=value pairs in one label selector"})
    max_batch_missions: int = field(default=1000, metadata={"help": "missions in one SubmitMissions call"})


def limit_flag(name: str) -> str:
    """The command-line flag that sets the ``Limits`` field ``name``."""
    return "--" + name.replace("_", "-")


def named_limit(name: str) -> str:
    """How an error message names a limit: the field and the flag that raises it."""
    return f"({name}, {limit_flag(name)})"


def check_count(field: str, count: int, what: str, name: str, limits: Limits) -> None:
    """InvalidArgumentError for ``field`` when its ``count`` ``what`` (e.g. "ids") exceed the
    limit ``name``, which the message names with its flag."""
    limit = getattr(limits, name)
    if count > limit:
        raise InvalidArgumentError(field, f"has {count} {what}; the limit is {limit} {named_limit(name)}")
