"""The benchmark's targets and its plain-text table (no extra dependency)."""

from __future__ import annotations

from typing import Any, Final

from portfolio_core.bench.contenders import COALESCED, LABELS, LIBRARY, NAIVE_ORM, RAW
from portfolio_core.bench.scenarios import SCENARIOS
from portfolio_core.units import Ratio

TARGETS: Final[dict[str, Ratio]] = {
    "uncontended_ratio": 0.35,
    "hot_ratio": 0.4,
    "hot_attempts_per_commit": 1.3,
    "reprice_ratio": 1.0,
    "uncontended_vs_orm": 1.0,
    "uncontended_cpu_vs_orm": 1.1,
    "hot_coalesced_vs_raw": 2.0,
    "hot_auto_vs_best_explicit": 0.9,
}
"""Library throughput as a fraction of raw psycopg2's (and the retry budget when hot);
(c) re-pricing at least raw's rate; (a) against the naive ORM: throughput at least, CPU
per op at most these multiples;
hot: a coalescing store at least 2x raw FOR UPDATE with a p99 no worse than raw's,
and the default "auto" at least 0.9x the best explicit lock mode."""

_COLUMNS: Final = (
    ("scenario", 12),
    ("contender", 18),
    ("workers", 7),
    ("commits", 7),
    ("ops/s", 9),
    ("att/commit", 10),
    ("p50 ms", 8),
    ("p99 ms", 8),
    ("x raw", 6),
    ("x ORM", 6),
    ("cpu us/op", 9),
    ("ops/s per round", 22),
)


def targets_met(scenarios: dict[str, Any]) -> dict[str, bool]:
    """Whether each scenario met its target (the hot ones in their best lock mode)."""
    met = {
        "uncontended": scenarios["uncontended"]["ratio"] >= TARGETS["uncontended_ratio"],
        "reprice": scenarios["reprice"]["ratio"] >= TARGETS["reprice_ratio"]
        and scenarios["reprice"]["library"]["version_bumps"]
        == [1] * scenarios["reprice"]["rounds"],
    }
    uncontended = scenarios["uncontended"]
    if "ratio_vs_orm" in uncontended:
        met["uncontended_vs_orm"] = uncontended["ratio_vs_orm"] >= TARGETS["uncontended_vs_orm"]
        met["uncontended_cpu_vs_orm"] = (
            uncontended["cpu_ratio_vs_orm"] <= TARGETS["uncontended_cpu_vs_orm"]
        )
    for name in ("hot_8", "hot_32"):
        hot = scenarios[name]
        met[name] = (
            hot["ratio"] >= TARGETS["hot_ratio"]
            and hot["best_attempts_per_commit"] <= TARGETS["hot_attempts_per_commit"]
        )
        met.update(_hot_targets(name, hot))
    return met


def _hot_targets(name: str, hot: dict[str, Any]) -> dict[str, bool]:
    """A hot scenario's coalescing target (if it ran) and auto's against the best explicit mode."""
    met: dict[str, bool] = {}
    coalesced = hot.get(COALESCED)
    if coalesced is not None:
        met[f"{name}_coalesced"] = (
            coalesced["ratio"] >= TARGETS["hot_coalesced_vs_raw"]
            and coalesced["p99_ms"] <= hot[RAW]["p99_ms"]
        )
    library = hot[LIBRARY]
    explicit = [stats["ops_per_s"] for mode, stats in library.items() if mode != "auto"]
    if "auto" in library and explicit and max(explicit):
        met[f"{name}_auto"] = (
            library["auto"]["ops_per_s"] / max(explicit) >= TARGETS["hot_auto_vs_best_explicit"]
        )
    return met


def _cell(ratio: object) -> str:
    return f"{ratio:.3f}" if isinstance(ratio, float) else ""


def _row(scenario: str, contender: str, stats: dict[str, Any]) -> str:
    cells = (
        scenario,
        contender,
        stats["workers"],
        stats["commits"],
        f"{stats['ops_per_s']:.1f}",
        f"{stats['attempts_per_commit']:.2f}",
        f"{stats['p50_ms']:.2f}",
        f"{stats['p99_ms']:.2f}",
        _cell(stats.get("ratio")),
        _cell(stats.get("ratio_vs_orm")),
        f"{stats['cpu_us_per_op']:.0f}",
        "/".join(f"{rate:.0f}" for rate in stats.get("rounds_ops_per_s", [])),
    )
    return "  ".join(
        str(cell).ljust(width) if index < 2 or index == 11 else str(cell).rjust(width)
        for index, (cell, (_, width)) in enumerate(zip(cells, _COLUMNS, strict=True))
    ).rstrip()


def _scenario_rows(scenarios: dict[str, Any], raw_name: str, library_name: str) -> list[str]:
    """Per scenario: raw, the library (each lock mode when hot), then any other contender."""
    lines = []
    for name in SCENARIOS:
        scenario = scenarios[name]
        lines.append(_row(name, raw_name, scenario[RAW]))
        library = scenario[LIBRARY]
        if "ops_per_s" in library:
            lines.append(_row(name, library_name, library))
        else:
            for mode, stats in library.items():
                best = " *" if mode == scenario["best_mode"] else ""
                lines.append(_row(name, f"{library_name} {mode}{best}", stats))
        for key, stats in scenario.items():
            if key not in (RAW, LIBRARY) and isinstance(stats, dict) and "ops_per_s" in stats:
                lines.append(_row(name, LABELS.get(key, key), stats))
    return lines


def _orm_line(scenarios: dict[str, Any], library_name: str = "library") -> list[str]:
    """The library against the naive ORM: throughput and CPU per op, per scenario."""
    parts = [
        f"{name} {scenario['ratio_vs_orm']:.2f}x ops/s, {scenario['cpu_ratio_vs_orm']:.2f}x CPU/op"
        for name, scenario in scenarios.items()
        if "ratio_vs_orm" in scenario and NAIVE_ORM in scenario
    ]
    return [f"{library_name} vs naive ORM (hot: best mode): " + "; ".join(parts)] if parts else []


def _scaling_lines(rows: list[dict[str, Any]]) -> list[str]:
    """(d): median ms per op at each scale, library then (raw); the library's scale ratio."""
    if not rows:
        return []
    lines = ["scaling (d), median ms per op, library (raw), scale ratio = large / small:"]
    for row in rows:
        library, raw = row["library_ms"], row["raw_ms"]
        lines.append(
            f"  {row['operation']}: {library['small']} ({raw['small']}) "
            f"at {row['small']} {row['unit']}, "
            f"{library['large']} ({raw['large']}) at {row['large']}: "
            f"{row['scale_ratio']}x (raw {row['raw_scale_ratio']}x), "
            + (
                f"{row['x_raw']['large']}x raw at {row['large']} (reads every position)"
                if row["target"] is None
                else f"target {row['target']}x {'met' if row['met'] else 'MISSED'}"
            )
        )
    return lines


def render_table(results: dict[str, Any]) -> str:
    """Every contender of every scenario, one line each, then the targets."""
    header = "  ".join(
        name.ljust(width) if index < 2 or index == 11 else name.rjust(width)
        for index, (name, width) in enumerate(_COLUMNS)
    ).rstrip()
    lines = [header, "-" * len(header)]
    scenarios = results["scenarios"]
    lines += _scenario_rows(scenarios, "raw psycopg2", "library")
    if "async" in results:
        lines += ["", "asyncio tasks instead of threads (x raw = vs raw asyncpg):"]
        lines += _scenario_rows(results["async"], "raw asyncpg", "async")
    lines.append("")
    lines += _orm_line(scenarios)
    if "async" in results:
        lines += _orm_line(results["async"], "async")
    reprice = scenarios["reprice"]
    lines.append(
        f"reprice: {reprice['positions']} positions per call, library version bumps per call: "
        f"{reprice['library']['version_bumps']}"
    )
    repeat = results.get("keyed_repeat")
    if repeat is not None:
        lines.append(
            f"keyed execute repeat: {repeat['short_ms']} ms at {repeat['short_events']} events, "
            f"{repeat['long_ms']} ms at {repeat['long_events']} events "
            f"(ratio {repeat['ratio']}; flat = independent of history)"
        )
    lines += _scaling_lines(results.get("scaling", []))
    met = results["targets_met"]
    lines.append(
        "targets: "
        + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in met.items())
        + f"  ({', '.join(f'{key} {value}' for key, value in TARGETS.items())})"
    )
    return "\n".join(lines)
