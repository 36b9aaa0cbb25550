"""List pages (AIP-158): the page size to serve, and opaque page tokens bound to their filter."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence

from mission_service.limits import Limits
from missions.errors import InvalidArgumentError

__all__ = ["decode_page_token", "encode_page_token", "page_size"]

# Largest value an SQLite INTEGER (and a log position) can hold.
_MAX_POSITION = 2**63 - 1


def page_size(requested: int, limits: Limits) -> int:
    """The page size to serve: 0 means the default, and anything above the limit is lowered to it."""
    if requested < 0:
        raise InvalidArgumentError("page_size", f"must not be negative, got {requested}")
    return min(requested or limits.default_page_size, limits.max_page_size)


def _filter_digest(states: Sequence[int], mission_type: str) -> str:
    canonical = json.dumps([sorted(set(states)), mission_type])
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(after: int, states: Sequence[int], mission_type: str) -> str:
    """The token of the page after position ``after`` of the list filtered by ``states`` and ``mission_type``."""
    raw = json.dumps({"after": after, "filter": _filter_digest(states, mission_type)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, states: Sequence[int], mission_type: str) -> int:
    """The position a page token encodes; 0 for an empty token."""
    if not token:
        return 0
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, digest = raw["after"], raw["filter"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError("page_token", "is not a page token issued for this list") from exc
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= _MAX_POSITION:
        raise InvalidArgumentError("page_token", "is not a page token issued for this list")
    if digest != _filter_digest(states, mission_type):
        raise InvalidArgumentError("page_token", "was issued for different filters (states, type)")
    return after
