"""The benchmark's ratios, targets and table from made-up numbers: no database involved."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError

from portfolio_core.bench.contenders import NAIVE_ORM, summarize_hot, summarize_uncontended
from portfolio_core.bench.naive_orm import is_retryable
from portfolio_core.bench.report import TARGETS, render_table, targets_met
from portfolio_core.bench.scaling import _row
from portfolio_core.store import LOCK_MODES


def _stats(
    ops_per_s: float, cpu_us_per_op: float, attempts_per_commit: float = 1.0
) -> dict[str, Any]:
    return {
        "workers": 8,
        "commits": 100,
        "attempts": round(100 * attempts_per_commit),
        "attempts_per_commit": attempts_per_commit,
        "seconds": 100 / ops_per_s,
        "ops_per_s": ops_per_s,
        "p50_ms": 4.0,
        "p99_ms": 9.0,
        "rounds_ops_per_s": [ops_per_s],
        "cpu_us_per_op": cpu_us_per_op,
    }


def _results(library: float, library_cpu: float) -> dict[str, Any]:
    uncontended = summarize_uncontended(
        8,
        64,
        {
            "raw": _stats(8000, 80),
            "library": _stats(library, library_cpu),
            NAIVE_ORM: _stats(2000, 400),
        },
    )
    hot = {"raw": _stats(2500, 80), NAIVE_ORM: _stats(1000, 400)}
    hot |= {mode: _stats(500 + 100 * n, 500) for n, mode in enumerate(LOCK_MODES)}
    reprice = {
        "positions": 10,
        "rounds": 1,
        "raw": _stats(4, 1000),
        "library": {**_stats(3, 2000), "version_bumps": [1]},
        "ratio": 0.75,
    }
    scenarios = {
        "uncontended": uncontended,
        "hot_8": summarize_hot(8, 10, dict(hot), LOCK_MODES),
        "hot_32": summarize_hot(32, 10, dict(hot), LOCK_MODES),
        "reprice": reprice,
    }
    return {"scenarios": scenarios, "targets_met": targets_met(scenarios)}


def test_library_is_compared_with_the_naive_orm_in_throughput_and_cpu() -> None:
    results = _results(library=2500, library_cpu=420)
    uncontended = results["scenarios"]["uncontended"]

    assert uncontended["ratio"] == 0.312
    assert uncontended["ratio_vs_orm"] == 1.25
    assert uncontended["cpu_ratio_vs_orm"] == 1.05
    assert uncontended[NAIVE_ORM]["ratio"] == 0.25  # the ORM itself against raw
    assert results["targets_met"]["uncontended_vs_orm"] is True
    assert results["targets_met"]["uncontended_cpu_vs_orm"] is True
    assert {"uncontended_vs_orm", "uncontended_cpu_vs_orm"} <= set(TARGETS)


def test_missing_the_orm_targets_is_reported() -> None:
    met = _results(library=1800, library_cpu=500)["targets_met"]

    assert met["uncontended_vs_orm"] is False
    assert met["uncontended_cpu_vs_orm"] is False


def test_hot_result_keeps_the_orm_beside_the_lock_modes() -> None:
    hot = _results(library=2500, library_cpu=420)["scenarios"]["hot_32"]
    best = LOCK_MODES[-1]  # the made-up numbers rise with the mode's position

    assert set(hot["library"]) == set(LOCK_MODES)
    assert hot["best_mode"] == best
    assert hot["ratio_vs_orm"] == hot["library"][best]["ratio_vs_orm"]
    assert hot[NAIVE_ORM]["ops_per_s"] == 1000


def test_table_shows_a_naive_orm_row_per_deposit_scenario_and_the_orm_ratios() -> None:
    table = render_table(_results(library=2500, library_cpu=420))
    lines = table.splitlines()

    assert "x ORM" in lines[0]
    orm_rows = [line for line in lines if "naive ORM" in line and line.startswith(("unc", "hot"))]
    assert [row.split()[0] for row in orm_rows] == ["uncontended", "hot_8", "hot_32"]
    library_row = next(line for line in lines if line.startswith("uncontended   library"))
    assert "1.250" in library_row.split()
    assert "library vs naive ORM (hot: best mode): uncontended 1.25x ops/s, 1.05x CPU/op" in table
    assert "uncontended_vs_orm met" in table


class _DriverError(Exception):
    def __init__(self, pgcode: str) -> None:
        super().__init__(pgcode)
        self.pgcode = pgcode


def test_the_naive_orm_retries_only_conflicts() -> None:
    assert is_retryable(StaleDataError("version moved"))
    assert is_retryable(OperationalError("UPDATE", {}, _DriverError("40001")))
    assert is_retryable(OperationalError("UPDATE", {}, _DriverError("40P01")))
    assert not is_retryable(OperationalError("UPDATE", {}, _DriverError("57014")))
    assert not is_retryable(ValueError("no"))


def test_a_scaling_row_without_a_flat_target_reports_its_cost_against_raw() -> None:
    flat = _row(
        "re-price one position", "open positions", 1, 10_000, {1: (1.0, 2.0), 10_000: (1.0, 2.5)}
    )
    read = _row("get", "open positions", 1, 10_000, {1: (1.0, 2.0), 10_000: (40.0, 60.0)}, None)
    results = _results(2500, 380)
    results["scaling"] = [flat, read]

    lines = render_table(results).splitlines()

    assert (flat["met"], read["met"], read["x_raw"]["large"]) == (True, None, 1.5)
    assert "target 1.5x met" in next(line for line in lines if "re-price one" in line)
    get_line = next(line for line in lines if line.strip().startswith("get:"))
    assert get_line.endswith("1.5x raw at 10000 (reads every position)")
