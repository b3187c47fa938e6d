"""Who competes in a scenario, and how their results compare.

A contender is named by its report key (its ``Side``): ``raw`` (psycopg2 or
asyncpg, the library's own SQL with nothing around it), ``library``
(``PortfolioStore.execute``), ``coalesced`` (the same calls on a store built
with ``coalesce=True``: concurrent calls on one portfolio share a transaction)
and ``naive_orm`` (what a user would write instead: ``naive_orm``). Each
driver maps a side to the operation that runs it; ``Bench.contend`` runs
every contender of a scenario in round-robin rounds and checks each against
the database. Adding one is a new side here, one entry in each driver's table
and one in the scenario's contenders: the ratios and the table follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from portfolio_core.units import Ratio

Side = Literal["raw", "library", "coalesced", "naive_orm"]
"""A contender's report key (the hot scenario reports the library per lock mode)."""

RAW: Final = "raw"
LIBRARY: Final = "library"
NAIVE_ORM: Final = "naive_orm"
COALESCED: Final = "coalesced"

COUNTED_BY_METRICS: Final[frozenset[str]] = frozenset({LIBRARY, COALESCED})
"""Sides whose failed attempts are counted from the library's metrics, not returned."""

LABELS: Final[Mapping[str, str]] = {NAIVE_ORM: "naive ORM", COALESCED: "coalesced"}
"""How the table names a side other than raw and library (default: its key)."""


def _ratio(numerator: float, denominator: float) -> Ratio:  # float-ok: ops/s, µs
    return round(numerator / denominator, 3) if denominator else 0.0


def compare(reports: Mapping[str, dict[str, Any]], names: Iterable[str]) -> None:
    """Give each of ``names``' reports its ratios: ``ratio`` (ops/s vs raw) and, when
    a naive ORM ran, ``ratio_vs_orm`` and ``cpu_ratio_vs_orm`` (CPU per op vs its)."""
    raw, orm = reports[RAW], reports.get(NAIVE_ORM)
    for name in names:
        report = reports[name]
        report["ratio"] = _ratio(report["ops_per_s"], raw["ops_per_s"])
        if orm is not None and name != NAIVE_ORM:
            report["ratio_vs_orm"] = _ratio(report["ops_per_s"], orm["ops_per_s"])
            report["cpu_ratio_vs_orm"] = _ratio(report["cpu_us_per_op"], orm["cpu_us_per_op"])


def headline(report: Mapping[str, Any]) -> dict[str, Any]:
    """A compared report's ratios, repeated at the scenario's top level."""
    keys = ("ratio", "ratio_vs_orm", "cpu_ratio_vs_orm")
    return {key: report[key] for key in keys if key in report}


def summarize_uncontended(
    workers: int, portfolios: int, reports: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """The uncontended result: every contender's report, the library's ratios on top."""
    compare(reports, [name for name in reports if name != RAW])
    return {
        "workers": workers,
        "portfolios": portfolios,
        **reports,
        **headline(reports[LIBRARY]),
    }


def summarize_hot(
    workers: int, ops_per_worker: int, reports: Mapping[str, dict[str, Any]], modes: Iterable[str]
) -> dict[str, Any]:
    """The hot-portfolio result: each lock mode's ratios, the best mode's on top.

    ``reports`` holds ``raw``, one report per lock mode (``modes``) and any
    other contender (``naive_orm``...), which is reported under its own key.
    """
    compare(reports, [name for name in reports if name != RAW])
    library = {mode: reports[mode] for mode in modes}
    others = {name: report for name, report in reports.items() if name not in library}
    best = max(library, key=lambda name: library[name]["ops_per_s"])
    return {
        "workers": workers,
        "ops_per_worker": ops_per_worker,
        **others,
        "library": library,
        "best_mode": best,
        **headline(library[best]),
        "best_attempts_per_commit": library[best]["attempts_per_commit"],
    }
