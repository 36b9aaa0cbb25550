"""The suite's figures: collected per run over the repetitions, printed as Markdown tables and JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.stats import LATENCY_QUANTILES, Spread, ratio, spread

__all__ = [
    "BACKLOG",
    "CELERY",
    "CELERY_EVENTS",
    "Collected",
    "ours_label",
    "render",
]

CELERY_EVENTS = "Celery -E (events)"
CELERY = "Celery (no events)"
BACKLOG = "ours, backlog"
_CELERY_SIDES = (CELERY_EVENTS, CELERY)


def ours_label(workers: int) -> str:
    return f"ours, {workers} worker{'s' if workers > 1 else ''}"


@dataclass
class Collected:
    """Every run's figures: scenario -> side -> figure -> one value per repetition that succeeded."""

    values: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, scenario: str, side: str, figures: Mapping[str, float]) -> None:
        runs = self.values.setdefault(scenario, {}).setdefault(side, {})
        for name, value in figures.items():
            runs.setdefault(name, []).append(value)

    def get(self, scenario: str, side: str, figure: str) -> Spread:
        return spread(self.values.get(scenario, {}).get(side, {}).get(figure, []))

    def sides(self, scenario: str) -> list[str]:
        return list(self.values.get(scenario, {}))

    def as_json(self) -> dict[str, Any]:
        summary = {
            scenario: {
                side: {name: asdict(spread(values)) for name, values in runs.items()} for side, runs in sides.items()
            }
            for scenario, sides in self.values.items()
        }
        return {"runs": self.values, "summary": summary, "failures": self.failures}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def _paired_rows(
    collected: Collected, scenario: str, ours: Sequence[str], figures: Sequence[tuple[str, str, int, float]]
) -> list[list[str]]:
    """One row per (our side, figure): ours, then each Celery side and our ratio to it."""
    rows = []
    for side in ours:
        for figure, title, digits, scale in figures:
            mine = collected.get(scenario, side, figure)
            row = [f"{side}: {title}", mine.format(digits, scale)]
            for celery in _CELERY_SIDES:
                theirs = collected.get(scenario, celery, figure)
                row += [theirs.format(digits, scale), _ratio(ratio(mine, theirs))]
            rows.append(row)
    return rows


_PAIRED_HEADER = ["", "ours", CELERY_EVENTS, "ours / Celery -E", CELERY, "ours / Celery"]


def _throughput(collected: Collected, ours: Sequence[str]) -> str:
    rows = _paired_rows(collected, "throughput", ours, [("per_s", "missions/s", 0, 1.0)])
    return "### 1. Throughput, end to end (missions/s, higher is better)\n\n" + _table(_PAIRED_HEADER, rows)


def _latency(collected: Collected) -> str:
    figures = []
    for prefix, title in (("done", "submit -> done seen"), ("submit", "submit round trip")):
        for q in LATENCY_QUANTILES:
            figures.append((f"{prefix}_p{round(q * 100)}_s", f"{title} p{round(q * 100)} (ms)", 2, 1000.0))
    rows = _paired_rows(collected, "latency", [ours_label(1)], figures)
    return (
        "### 2. Latency, sequential (ms, lower is better)\n\n"
        "done seen: ours = COMPLETED on WatchEvents; Celery -E = task-succeeded at the event receiver;"
        " Celery = result through rpc://\n\n" + _table(_PAIRED_HEADER, rows)
    )


def _own_watch(collected: Collected) -> str:
    """Ours only: the same missions seen on a WatchEvents opened after each submit, and on
    the long-lived one; the difference is what watching one's own mission costs."""
    side = ours_label(1)
    rows = []
    for q in LATENCY_QUANTILES:
        name = f"p{round(q * 100)}"
        own, live = (collected.get("latency", side, f"{kind}_{name}_s") for kind in ("own", "done"))
        difference = f"{1000.0 * (own.median - live.median):+.2f}" if own.runs and live.runs else "n/a"
        rows.append([name, own.format(2, 1000.0), live.format(2, 1000.0), difference])
    return (
        "### 2b. Watching one's own mission (ms, ours)\n\n"
        "submit, then WatchEvents of that mission alone until COMPLETED (missionctl submit --wait),"
        " against the same missions on a long-lived WatchEvents of every event\n\n"
        + _table(["", "own watch", "long-lived watch", "difference of medians"], rows)
    )


_COST_FIGURES = [
    ("cpu_service_per_1000", "CPU s / 1,000: mission-service", 2),
    ("cpu_worker_per_1000", "CPU s / 1,000: worker(s)", 2),
    ("cpu_broker_per_1000", "CPU s / 1,000: broker (beam.smp)", 2),
    ("cpu_client_per_1000", "CPU s / 1,000: bench client", 2),
    ("peak_rss_service_mib", "peak RSS: mission-service (MiB)", 1),
    ("peak_rss_worker_mib", "peak RSS: one worker (MiB; Celery: main + pool)", 1),
    ("events_per_mission", "events published per mission", 2),
    ("load1", "1-min load average at the run's start (noise)", 2),
]


def _cost(collected: Collected, ours: Sequence[str]) -> str:
    sides = [*ours, *_CELERY_SIDES]
    rows = [
        [title, *(collected.get("throughput", side, figure).format(digits) for side in sides)]
        for figure, title, digits in _COST_FIGURES
    ]
    return "### 4. Cost per mission (throughput runs)\n\n" + _table(["", *sides], rows)


def _scaling(collected: Collected, ours: Sequence[str]) -> str:
    rows = []
    one_worker = collected.get("throughput", ours_label(1), "cpu_broker_per_1000")
    for side in ours:
        broker = collected.get("throughput", side, "cpu_broker_per_1000")
        rows.append([f"{side}: missions/s", collected.get("throughput", side, "per_s").format()])
        # Per-mission broker work that grows with the workers is what adding workers costs.
        rows.append(
            [
                f"{side}: broker CPU ms per mission (/ 1 worker's)",
                f"{broker.format(2)} ({_ratio(ratio(broker, one_worker))})",
            ]
        )
    backlog = collected.values.get("backlog", {}).get(BACKLOG, {})
    for figure in sorted(backlog, key=_depth):
        spread_ = collected.get("backlog", BACKLOG, figure)
        if figure.startswith("drain_depth_"):
            rows.append([f"backlog of {_depth(figure):,} already queued: drain, missions/s", spread_.format()])
        elif figure.startswith("probe_depth_"):
            rows.append([f"probe behind {_depth(figure):,} queued: submit -> COMPLETED (ms)", spread_.format(1, 1000)])
    return "### 5. Scaling (ours)\n\n" + _table(["", "value"], rows)


def _depth(figure: str) -> int:
    digits = "".join(char if char.isdigit() else " " for char in figure).split()
    return int(digits[0]) if digits else -1


def render(collected: Collected, conditions: Mapping[str, str], ours_workers: Sequence[int]) -> str:
    """Every table the collected figures allow, under the conditions they were measured in."""
    ours = [ours_label(workers) for workers in ours_workers]
    parts = ["## Conditions\n\n" + "\n".join(f"- {key}: {value}" for key, value in conditions.items())]
    parts.append(
        "Figures: median [lowest-highest] over the repetitions that completed."
        " Scenario 3 (Celery's figures and our ratio to them) is the right-hand columns of tables 1 and 2."
    )
    if "throughput" in collected.values:
        parts.append(_throughput(collected, ours[:2]))
    if "latency" in collected.values:
        parts.append(_latency(collected))
        parts.append(_own_watch(collected))
    if "throughput" in collected.values:
        parts.append(_cost(collected, ours[:2]))
    if len(ours) > 2 or "backlog" in collected.values:
        parts.append(_scaling(collected, ours))
    if collected.failures:
        parts.append("### Failed runs\n\n" + "\n".join(f"- {failure}" for failure in collected.failures))
    return "\n\n".join(parts)
