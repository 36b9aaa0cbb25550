"""The suite's pure helpers: percentiles, spreads over repetitions, ratios and table rows."""

from __future__ import annotations

import math

import pytest

from bench.report import Collected, ours_label, render
from bench.stats import Spread, latency_figures, percentile, ratio, spread


def test_percentile_is_nearest_rank() -> None:
    values = [float(value) for value in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.9) == 90
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.01) == 7


def test_percentile_of_nothing_is_nan_and_q_is_checked() -> None:
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_spread_takes_the_median_and_leaves_failed_runs_out() -> None:
    assert spread([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0, 3)
    assert spread([4.0, 1.0, math.nan, 2.0, 3.0]) == Spread(2.5, 1.0, 4.0, 4)
    assert spread([math.nan]).runs == 0


def test_spread_formats_median_and_range() -> None:
    assert spread([1000.0, 1200.0, 1100.0]).format() == "1,100 [1,000-1,200]"
    assert spread([0.0042]).format(2, 1000) == "4.20"
    assert spread([]).format() == "n/a"


def test_ratio_is_ours_over_theirs() -> None:
    assert ratio(spread([500.0]), spread([1000.0])) == 0.5
    assert math.isnan(ratio(spread([500.0]), spread([])))
    assert math.isnan(ratio(spread([500.0]), spread([0.0])))


def test_latency_figures_names_each_quantile() -> None:
    figures = latency_figures([0.001] * 10, [float(value) for value in range(1, 11)])
    assert figures["done_p50_s"] == 5
    assert figures["done_p99_s"] == 10
    assert figures["submit_p90_s"] == 0.001


def test_render_pairs_ours_with_each_celery_side() -> None:
    collected = Collected()
    collected.add("throughput", ours_label(1), {"per_s": 500.0})
    collected.add("throughput", "Celery -E (events)", {"per_s": 1000.0})
    collected.add("throughput", "Celery (no events)", {"per_s": 1250.0})
    text = render(collected, {"python": "CPython"}, [1])
    assert "| ours, 1 worker: missions/s | 500 | 1,000 | 0.50x | 1,250 | 0.40x |" in text


def test_render_shows_what_watching_ones_own_mission_adds() -> None:
    collected = Collected()
    figures = {f"{kind}_p{p}_s": value for kind, value in (("own", 0.009), ("done", 0.006)) for p in (50, 90, 99)}
    collected.add("latency", ours_label(1), figures)
    text = render(collected, {"python": "CPython"}, [1])
    assert "| p50 | 9.00 | 6.00 | +3.00 |" in text


def test_render_shows_the_broker_cost_per_mission_for_each_worker_count() -> None:
    collected = Collected()
    collected.add("throughput", ours_label(1), {"per_s": 300.0, "cpu_broker_per_1000": 2.0})
    collected.add("throughput", ours_label(4), {"per_s": 280.0, "cpu_broker_per_1000": 3.0})
    text = render(collected, {"python": "CPython"}, [1, 2, 4])
    assert "| ours, 4 workers: broker CPU ms per mission (/ 1 worker's) | 3.00 (1.50x) |" in text
