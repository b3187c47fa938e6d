"""The demo's final report: a JSON-ready dict, and its rendering as rich tables."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from portfolio_core.demo.config import DemoConfig
from portfolio_core.demo.faults import FaultCounts
from portfolio_core.demo.invariants import Check, as_json
from portfolio_core.demo.stats import RETRY_CAUSES, WorkerStats
from portfolio_core.demo.trades import KINDS
from portfolio_core.units import Milliseconds, Seconds


def percentiles(samples: list[Milliseconds]) -> dict[str, Milliseconds]:
    """p50/p95/p99/max of latencies in milliseconds (zeros when there are none)."""
    if not samples:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    if len(samples) == 1:
        cuts = samples * 99
    else:
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 2),
        "p95": round(cuts[94], 2),
        "p99": round(cuts[98], 2),
        "max": round(max(samples), 2),
    }


def build_report(
    config: DemoConfig,
    stats: WorkerStats,
    checks: list[Check],
    *,
    elapsed: Seconds,
    faults: FaultCounts | None,
    database: str,
) -> dict[str, Any]:
    """Everything the run measured and checked, as plain JSON values."""
    retries = sum(stats.retry_causes.values())
    settings = {k: str(v) if v is not None else None for k, v in asdict(config).items()}
    settings.pop("url", None)
    return {
        "database": database,
        "config": settings,
        "features": {"idempotency_keys": config.use_keys, "coalesce": config.coalesce},
        "elapsed_seconds": round(elapsed, 2),
        "operations": {
            "finished": stats.done,
            "committed": stats.committed_total,
            "committed_by_kind": {kind: stats.committed[kind] for kind in KINDS},
            "committed_by_lock_mode": dict(stats.committed_by_lock),
            "refused_by_domain": dict(stats.rejected),
            "outcome_unknown": dict(stats.unknown),
            "outcome_unknown_resolved_by_key": {
                "had_committed": stats.events["commit_outcome_resolved_committed"],
                "had_not_committed_rerun": stats.events["commit_outcome_resolved_rerun"],
                "resent_by_worker": stats.resolved_by_key,
            },
            "abandoned": stats.abandoned,
            "unexpected_errors": stats.unexpected[:20],
        },
        "attempts": stats.calls + retries,
        "retries": {
            "total": retries + sum(stats.reruns.values()),
            # Every cause is listed, zeros too: "no deadlock" is worth seeing.
            "by_cause": {cause: stats.retry_causes[cause] for cause in RETRY_CAUSES.values()}
            | dict(stats.retry_causes),
            "reruns_after_policy_exhausted": dict(stats.reruns),
        },
        "concurrency_metrics": dict(stats.metrics),
        "lock_timeouts": stats.metrics["lock_timeouts"],
        "connection_lost_events": stats.events["connection_lost"],
        "throughput_ops_per_second": round(stats.committed_total / elapsed, 1) if elapsed else 0,
        "latency_ms": percentiles(stats.latencies_ms),
        "faults": None
        if faults is None
        else {
            "backends_terminated": faults.terminated,
            "server_restarts": faults.restarts,
            "restart_seconds": round(faults.restart_seconds, 2),
            "reconnect_waits": stats.reconnect_waits,
        },
        "invariants": as_json(checks),
        "all_invariants_hold": all(c.holds for c in checks),
    }


def _pairs(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, min_width=46)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def render(console: Console, report: dict[str, Any]) -> None:
    """Print the report as rich tables."""
    ops, retries, latency = report["operations"], report["retries"], report["latency_ms"]
    config = report["config"]
    console.print(
        f"\n[bold]portfolio-core demo[/bold]: {config['workers']} workers in "
        f"{config['processes']} processes, {config['portfolios']} portfolios "
        f"(hot share {config['hot_share']}), seed {config['seed']}, "
        f"{report['elapsed_seconds']} s\n{report['database']}"
        f"{', restarted once mid-run' if (report['faults'] or {}).get('server_restarts') else ''}"
        f"; idempotency keys: {'yes' if report['features']['idempotency_keys'] else 'no'}"
        f"{'; coalescing' if report['features'].get('coalesce') else ''}",
        highlight=False,
    )
    kinds = [(kind, n) for kind, n in ops["committed_by_kind"].items()]
    kinds.append(("[b]committed[/b]", ops["committed"]))
    kinds += [(f"by lock {mode}", n) for mode, n in sorted(ops["committed_by_lock_mode"].items())]
    kinds += [(f"refused: {reason}", n) for reason, n in sorted(ops["refused_by_domain"].items())]
    kinds.append(("outcome unknown (COMMIT cut, no key)", sum(ops["outcome_unknown"].values())))
    resolved = ops["outcome_unknown_resolved_by_key"]
    kinds.append(("COMMIT cut, key shows it committed", resolved["had_committed"]))
    kinds.append(("COMMIT cut, key shows it did not: re-run", resolved["had_not_committed_rerun"]))
    kinds.append(("COMMIT cut, store gave up: worker re-sent key", resolved["resent_by_worker"]))
    console.print(_pairs("Operations", kinds))
    concurrency: list[tuple[str, object]] = [("attempts", report["attempts"])]
    concurrency.append(("retries", retries["total"]))
    concurrency += [(f"  {cause}", n) for cause, n in sorted(retries["by_cause"].items())]
    concurrency += [
        (f"  re-run after {error}", n)
        for error, n in sorted(retries["reruns_after_policy_exhausted"].items())
    ]
    concurrency.append(("lock timeouts / NOWAIT refusals", report["lock_timeouts"]))
    concurrency.append(
        ("deadlocks detected", report["concurrency_metrics"].get("deadlocks_detected", 0))
    )
    concurrency.append(("connections lost (events)", report["connection_lost_events"]))
    console.print(_pairs("Concurrency", concurrency))
    performance = [("throughput (committed ops/s)", report["throughput_ops_per_second"])]
    performance += [(f"latency {name} (ms)", value) for name, value in latency.items()]
    if report["faults"] is not None:
        performance += [(name.replace("_", " "), v) for name, v in report["faults"].items()]
    console.print(_pairs("Performance and faults", performance))
    checks = Table(title="Invariants (recomputed from the database)", title_justify="left")
    checks.add_column("")
    checks.add_column("invariant", style="bold")
    checks.add_column("detail", overflow="fold")
    for check in report["invariants"]:
        mark = "[green]✔[/green]" if check["holds"] else "[red]✘[/red]"
        checks.add_row(mark, check["name"], check["detail"])
    console.print(checks)
    if report["all_invariants_hold"]:
        console.print("[bold green]ALL INVARIANTS HOLD[/bold green]")
    else:
        console.print("[bold red]INVARIANT VIOLATED[/bold red]")
