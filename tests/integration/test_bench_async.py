"""The benchmark's async column runs end to end on tiny sizes and checks its own outcome."""

from __future__ import annotations

from sqlalchemy import Engine

from portfolio_core.bench import raw
from portfolio_core.bench.async_scenarios import run_async_scenarios
from portfolio_core.bench.scenarios import Bench, Sizes
from portfolio_core.store import LOCK_MODES

TINY = Sizes(
    uncontended_ops=2, hot_ops=32, reprice_positions=40, reprice_rounds=1, warmup_ops=1, rounds=1
)


def test_async_column_runs_every_scenario_against_raw_asyncpg(
    engine: Engine, database_url: str
) -> None:
    with raw.connection_pool(engine.url, 2) as connections:
        bench = Bench(engine, connections, TINY)
        try:
            results = run_async_scenarios(database_url, bench, max_workers=32)
        finally:
            bench.close()

    assert set(results) == {"uncontended", "hot_8", "hot_32", "reprice"}
    assert results["uncontended"]["library"]["commits"] == 8 * TINY.uncontended_ops
    assert set(results["hot_32"]["library"]) == set(LOCK_MODES)
    assert results["hot_8"]["raw"]["attempts_per_commit"] == 1.0
    assert results["reprice"]["library"]["version_bumps"] == [1]
    assert results["reprice"]["library"]["positions_repriced_per_call"] == TINY.reprice_positions
    assert all(results[name]["ratio"] > 0 for name in results)
