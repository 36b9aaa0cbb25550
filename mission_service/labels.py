"""Mission labels: the bounds of a key and a value, and the label selector of WatchEvents."""

from __future__ import annotations

from mission_service.limits import Limits, check_count, named_limit
from missions.errors import InvalidArgumentError

__all__ = ["check_label", "parse_label_selector"]


def check_label(field: str, key: str, value: str, limits: Limits) -> None:
    """Raise InvalidArgumentError naming ``field`` when ``key`` or ``value`` breaks its length limit."""
    if not key or len(key) > limits.max_label_key_length:
        raise InvalidArgumentError(
            field,
            f"key {key[:70]!r} must be 1..{limits.max_label_key_length} characters"
            f" {named_limit('max_label_key_length')}",
        )
    if len(value) > limits.max_label_value_length:
        raise InvalidArgumentError(
            f"{field}[{key}]",
            f"value is longer than {limits.max_label_value_length} characters {named_limit('max_label_value_length')}",
        )


def parse_label_selector(selector: str, limits: Limits, field: str = "label_selector") -> tuple[tuple[str, str], ...]:
    """``"k=v,k2=v2"`` as sorted (key, value) pairs; empty for an empty selector.
    InvalidArgumentError names ``field`` when the selector is malformed or too long."""
    if not selector.strip():
        return ()
    # Counted before splitting, so a hostile selector is refused without building its pairs.
    count = selector.count(",") + 1
    check_count(field, count, "pairs", "max_label_selector_pairs", limits)
    pairs = []
    for part in selector.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(field, f"{part.strip()[:70]!r} is not key=value")
        pairs.append((key.strip(), value.strip()))
        check_label(field, *pairs[-1], limits)
    return tuple(sorted(dict(pairs).items()))
