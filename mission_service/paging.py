"""List pages (AIP-158): the page size to serve, and opaque page tokens bound to their filter."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence

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


# More filters of a list, by name, as JSON values (None: not given).
Filters = Mapping[str, object]


def _filter_digest(states: Sequence[int], mission_type: str, more: Filters) -> str:
    given = {name: value for name, value in more.items() if value not in (None, "", [], ())}
    # Without more filters the digest is what it was before they existed: older tokens stay valid.
    canonical = json.dumps([sorted(set(states)), mission_type, *([given] if given else [])], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(after: int, states: Sequence[int], mission_type: str, more: Filters | None = None) -> str:
    """The token of the page after position ``after`` of the list filtered by ``states``,
    ``mission_type`` and ``more``."""
    raw = json.dumps({"after": after, "filter": _filter_digest(states, mission_type, more or {})})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, states: Sequence[int], mission_type: str, more: Filters | None = None) -> int:
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
    if digest != _filter_digest(states, mission_type, more or {}):
        raise InvalidArgumentError("page_token", "was issued for other filters or another order")
    return after
