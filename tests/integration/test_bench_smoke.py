"""The benchmark in quick mode: it runs end to end and commits exactly what it reports.

Only counts and structure are asserted here, never speed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from portfolio_core import create_engine
from portfolio_core.bench import main
from portfolio_core.bench.scenarios import AMOUNT, QUICK
from portfolio_core.store import LOCK_MODES
from tests.integration.bench_naive_orm_checks import (
    HOT_TARGETS,
    ORM_TARGETS,
    assert_coalesced_column,
    assert_naive_orm_column,
)
from tests.integration.quick_bench import QuickBench

STATS_KEYS = {
    "workers",
    "commits",
    "attempts",
    "attempts_per_commit",
    "seconds",
    "ops_per_s",
    "p50_ms",
    "p99_ms",
    "rounds_ops_per_s",
    "cpu_us_per_op",
}


def _assert_committed(stats: dict[str, Any], expected_commits: int) -> None:
    assert set(stats) >= STATS_KEYS
    assert stats["commits"] == expected_commits
    assert stats["attempts"] >= stats["commits"]
    verified = stats["verified"]
    assert verified["version_delta"] == expected_commits
    assert Decimal(verified["cash_delta"]) == AMOUNT * expected_commits
    assert Decimal(verified["expected_cash_delta"]) == AMOUNT * expected_commits


def test_quick_benchmark_commits_exactly_what_it_reports(quick_bench: QuickBench) -> None:
    # The run (once per session, tests/conftest.py) is shared with test_bench_async.py.
    assert quick_bench.exit_code == 0
    results = quick_bench.results

    assert results["meta"]["quick"] is True
    scenarios = results["scenarios"]
    assert set(scenarios) == {"uncontended", "hot_8", "hot_32", "reprice"}
    assert set(results["targets_met"]) == set(scenarios) | ORM_TARGETS | HOT_TARGETS
    assert_naive_orm_column(results)
    assert_coalesced_column(results)
    repeat = results["keyed_repeat"]
    assert (repeat["short_events"], repeat["long_events"]) == (10, QUICK.repeat_history)
    assert repeat["ratio"] is not None
    scaling = {row["operation"]: row for row in results["scaling"]}
    assert set(scaling) == {"deposit", "open+close one position", "re-price one position", "get"}
    assert (scaling["get"]["target"], scaling["get"]["met"]) == (None, None)
    assert (scaling["deposit"]["small"], scaling["deposit"]["large"]) == (
        64,
        QUICK.scale_portfolios,
    )
    for row in scaling.values():
        assert row["scale_ratio"] > 0
        assert row["library_ms"]["large"] > 0
        assert row["raw_ms"]["large"] > 0

    uncontended = scenarios["uncontended"]
    assert (uncontended["workers"], uncontended["portfolios"]) == (8, 64)
    for side in ("raw", "library"):
        _assert_committed(uncontended[side], 8 * QUICK.uncontended_ops)
    assert uncontended["ratio"] > 0

    for name, workers in (("hot_8", 8), ("hot_32", 32)):
        hot = scenarios[name]
        expected = workers * hot["ops_per_worker"]
        _assert_committed(hot["raw"], expected)
        assert hot["raw"]["attempts"] == expected  # FOR UPDATE never retries
        assert set(hot["library"]) == set(LOCK_MODES)
        for stats in hot["library"].values():
            _assert_committed(stats, expected)
        assert hot["library"]["wait"]["attempts"] == expected
        assert hot["best_mode"] in LOCK_MODES
        assert hot["ratio"] == hot["library"][hot["best_mode"]]["ratio"]

    reprice = scenarios["reprice"]
    for side in ("raw", "library"):
        assert reprice[side]["version_bumps"] == [1] * QUICK.reprice_rounds
        assert reprice[side]["positions_repriced_per_call"] == QUICK.reprice_positions
        assert reprice[side]["commits"] == QUICK.reprice_rounds

    # The asyncio flavour runs the same scenarios and reports them under the same keys.
    if "async" in results:
        assert set(results["async"]) == set(scenarios)
        for name, scenario in scenarios.items():
            assert set(results["async"][name]) == set(scenario)

    # The run cleans up after itself.
    engine = create_engine(quick_bench.database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM portfolios")).scalar_one() == 0
            assert connection.execute(text("SELECT count(*) FROM positions")).scalar_one() == 0
    finally:
        engine.dispose()


def test_bench_rejects_an_unknown_option() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--no-such-option"])
    assert exited.value.code == 2
