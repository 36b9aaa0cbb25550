"""Input limits: what each request field may hold, and how a message names a limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

__all__ = ["Limits", "limit_flag", "named_limit"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits, enforced before anything is queued.

    Each field is a ``--<field-name>`` flag of mission-service backed by a
    ``MISSIONS_<FIELD_NAME>`` variable (mission_service/limit_flags.py); the defaults
    below are the documented ones (docs/security.md).

    Attributes:
        max_request_bytes: largest request message the server accepts (gRPC max receive
            message length); larger requests fail with RESOURCE_EXHAUSTED. 1 MiB.
        max_type_length: characters of a mission type (and of a type in a watch filter). 128.
        max_payload_bytes: serialized size of a payload Struct. 256 KiB.
        max_payload_depth: nesting depth of a payload Struct. 32.
        max_labels: labels per mission. 64.
        max_label_key_length: characters of a label key (also in a label selector). 63.
        max_label_value_length: characters of a label value (also in a label selector). 256.
        max_idempotency_key_length: characters of an idempotency key. 256.
        max_mission_id_length: characters of a mission id in a request. 128.
        default_max_attempts: attempts of a mission submitted with max_attempts 0. 3.
        max_max_attempts: the largest max_attempts a request may ask for. 100.
        max_timeout: the longest per-attempt timeout a request may ask for. 1 day.
        default_page_size: page size of a list request with page_size 0. 100.
        max_page_size: larger page sizes are lowered to this. 1000.
        max_watch_mission_ids: mission ids in one WatchEvents filter. 1000.
        max_watch_mission_types: mission types in one WatchEvents filter. 100.
        max_label_selector_pairs: key=value pairs in one label selector. 16.
        max_batch_missions: missions in one SubmitMissions call. 1000.
    """

    max_request_bytes: int = 1024 * 1024
    max_type_length: int = 128
    max_payload_bytes: int = 256 * 1024
    max_payload_depth: int = 32
    max_labels: int = 64
    max_label_key_length: int = 63
    max_label_value_length: int = 256
    max_idempotency_key_length: int = 256
    max_mission_id_length: int = 128
    default_max_attempts: int = 3
    max_max_attempts: int = 100
    max_timeout: timedelta = timedelta(days=1)
    default_page_size: int = 100
    max_page_size: int = 1000
    max_watch_mission_ids: int = 1000
    max_watch_mission_types: int = 100
    max_label_selector_pairs: int = 16
    max_batch_missions: int = 1000


def limit_flag(name: str) -> str:
    """The command-line flag that sets the ``Limits`` field ``name``."""
    return "--" + name.replace("_", "-")


def named_limit(name: str) -> str:
    """How an error message names a limit: the field and the flag that raises it."""
    return f"({name}, {limit_flag(name)})"
