"""Checks of the benchmark's naive-ORM and coalesced columns, for the quick-run smoke test."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from portfolio_core.bench.contenders import COALESCED, NAIVE_ORM
from portfolio_core.bench.report import render_table
from portfolio_core.bench.scenarios import AMOUNT

ORM_TARGETS = {"uncontended_vs_orm", "uncontended_cpu_vs_orm"}
HOT_TARGETS = {f"{hot}_{kind}" for hot in ("hot_8", "hot_32") for kind in ("coalesced", "auto")}


def _assert_landed(stats: dict[str, Any], commits: int) -> None:
    """Every commit the naive ORM counted moved version, cash and total deposits once."""
    assert stats["commits"] == commits
    assert stats["attempts"] >= commits
    assert stats["cpu_us_per_op"] > 0
    assert stats["p99_ms"] >= stats["p50_ms"] > 0
    verified = stats["verified"]
    assert verified["version_delta"] == commits
    assert Decimal(verified["cash_delta"]) == AMOUNT * commits
    assert Decimal(verified["deposits_delta"]) == AMOUNT * commits


def assert_naive_orm_column(results: dict[str, Any]) -> None:
    """The naive ORM ran in (a) and (b), threads and tasks, verified; ratios and targets."""
    assert set(results["targets_met"]) >= ORM_TARGETS
    per_worker = results["meta"]["sizes"]["uncontended_ops"]
    for flavour in ("scenarios", "async"):
        if flavour not in results:
            continue
        scenarios = results[flavour]
        uncontended = scenarios["uncontended"]
        _assert_landed(uncontended[NAIVE_ORM], uncontended["workers"] * per_worker)
        assert uncontended["ratio_vs_orm"] > 0
        assert uncontended["cpu_ratio_vs_orm"] > 0
        for name in ("hot_8", "hot_32"):
            hot = scenarios[name]
            _assert_landed(hot[NAIVE_ORM], hot["workers"] * hot["ops_per_worker"])
            assert hot[NAIVE_ORM]["attempts"] == hot[NAIVE_ORM]["commits"]  # FOR UPDATE
            assert hot["ratio_vs_orm"] == hot["library"][hot["best_mode"]]["ratio_vs_orm"]
    table = render_table(results)
    assert "naive ORM" in table
    assert "x ORM" in table
    assert "library vs naive ORM" in table


def assert_coalesced_column(results: dict[str, Any]) -> None:
    """The coalescing store ran in (a) and (b), threads and tasks, and committed what it counted."""
    assert set(results["targets_met"]) >= HOT_TARGETS
    per_worker = results["meta"]["sizes"]["uncontended_ops"]
    for flavour in ("scenarios", "async"):
        if flavour not in results:
            continue
        scenarios = results[flavour]
        uncontended = scenarios["uncontended"]
        _assert_landed(uncontended[COALESCED], uncontended["workers"] * per_worker)
        for name in ("hot_8", "hot_32"):
            hot = scenarios[name]
            _assert_landed(hot[COALESCED], hot["workers"] * hot["ops_per_worker"])
            assert hot[COALESCED]["ratio"] > 0
    assert "coalesced" in render_table(results)
