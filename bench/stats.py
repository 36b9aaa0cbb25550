"""Pure statistics for the suite: exact percentiles of one run, and the spread over repetitions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LATENCY_QUANTILES", "Spread", "latency_figures", "percentile", "ratio", "spread"]

LATENCY_QUANTILES = (0.5, 0.9, 0.99)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1): the smallest value with at least q of the samples at or below it.

    Exact, unlike ``measure.Histogram``: the suite keeps every sample of a run (at most a few
    thousand), and nearest-rank never reports a value that was not measured.
    """
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@dataclass(frozen=True, slots=True)
class Spread:
    """One figure over several repetitions: the median, and the lowest and highest run."""

    median: float
    low: float
    high: float
    runs: int

    def format(self, digits: int = 0, scale: float = 1.0) -> str:
        """``median [low-high]``, each multiplied by ``scale``; one run prints its value alone."""
        if not self.runs:
            return "n/a"
        median = f"{self.median * scale:,.{digits}f}"
        if self.runs == 1:
            return median
        return f"{median} [{self.low * scale:,.{digits}f}-{self.high * scale:,.{digits}f}]"


def spread(values: Sequence[float]) -> Spread:
    """Median, minimum and maximum of the repetitions' values (NaNs, from failed runs, are left out)."""
    finite = sorted(value for value in values if not math.isnan(value))
    if not finite:
        return Spread(math.nan, math.nan, math.nan, 0)
    middle = len(finite) // 2
    median = finite[middle] if len(finite) % 2 else (finite[middle - 1] + finite[middle]) / 2
    return Spread(median, finite[0], finite[-1], len(finite))


def ratio(ours: Spread, theirs: Spread) -> float:
    """Our median over theirs (NaN when either is missing or theirs is zero)."""
    if not ours.runs or not theirs.runs or theirs.median == 0:
        return math.nan
    return ours.median / theirs.median


def latency_figures(submit: Sequence[float], done: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 of the submit round trips and of submit -> done, keyed ``submit_p50_s``, ``done_p99_s``, ..."""
    figures = {}
    for q in LATENCY_QUANTILES:
        figures[f"submit_p{round(q * 100)}_s"] = percentile(submit, q)
        figures[f"done_p{round(q * 100)}_s"] = percentile(done, q)
    return figures
