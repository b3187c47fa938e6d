"""The benchmark's async column runs every scenario against raw asyncpg and checks its outcome.

It is checked on the session's quick bench run (tests/conftest.py, shared
with test_bench_smoke.py): the async column is part of every run.
"""

from __future__ import annotations

from portfolio_core.bench.scenarios import QUICK
from portfolio_core.store import LOCK_MODES
from tests.integration.quick_bench import QuickBench


def test_async_column_runs_every_scenario_against_raw_asyncpg(quick_bench: QuickBench) -> None:
    assert quick_bench.exit_code == 0
    results = quick_bench.results["async"]

    assert set(results) == {"uncontended", "hot_8", "hot_32", "reprice"}
    assert results["uncontended"]["library"]["commits"] == 8 * QUICK.uncontended_ops
    assert set(results["hot_32"]["library"]) == set(LOCK_MODES)
    assert results["hot_8"]["raw"]["attempts_per_commit"] == 1.0
    assert results["reprice"]["library"]["version_bumps"] == [1] * QUICK.reprice_rounds
    assert results["reprice"]["library"]["positions_repriced_per_call"] == QUICK.reprice_positions
    assert all(results[name]["ratio"] > 0 for name in results)
