"""Stress: keyed operations from 2 processes x 4 threads while backends are being killed.

A killer connection terminates a random backend of the test database
(``pg_terminate_backend``) about every 100 ms: a fault injector, not a way of
ordering a race, so a timed loop is right there. Connections die idle, in the
middle of a transaction and during COMMIT. Every operation carries its own
idempotency key and is retried by its caller until it returns. At the end:

* a request sent again with its key (15 % of them) gets the first answer back;
* each key's effect is in the events exactly once (twice for a transfer: one
  event per leg) and in the idempotency table once;
* each portfolio's deposits and withdrawals equal the sums of the operations
  that named it, and money is conserved to the cent over all portfolios:
  sum(cash + open cost basis - realized P&L) == sum(initial cash) + deposits
  - withdrawals (transfers cancel out);
* each portfolio's version equals its number of events, and replaying the
  events gives the stored portfolio.

The numbers (operations, kills, caller retries, resolved COMMITs, seconds)
are printed and recorded as test properties.
"""

from __future__ import annotations

import collections
import multiprocessing
import threading
import time
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine, text

from portfolio_core import PortfolioStore, create_engine
from tests.integration import stress_worker

PROCESSES = 2
OPERATIONS_PER_THREAD = 75
PORTFOLIOS = 6
INITIAL_CASH = Decimal("1000000")
KILL_EVERY_SECONDS = 0.1

_KILL_ONE = text(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend' ORDER BY random() LIMIT 1"
)


def _killer(database_url: str, stop: threading.Event, kills: list[int]) -> None:
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with engine.connect() as connection:
            while not stop.wait(KILL_EVERY_SECONDS):
                if connection.execute(_KILL_ONE).scalar():
                    kills.append(1)
    finally:
        engine.dispose()


def _run_workers(database_url: str, pids: list[UUID]) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    arguments = [
        (database_url, [str(pid) for pid in pids], index, OPERATIONS_PER_THREAD)
        for index in range(PROCESSES)
    ]
    with context.Pool(PROCESSES) as pool:
        return pool.starmap(stress_worker.run_process, arguments)


def _sum(
    rows: list[dict[str, Any]], kinds: tuple[str, ...], field: str = "", value: str = ""
) -> Decimal:
    """Sum of the amounts of the operations of ``kinds`` (whose ``field`` is ``value``)."""
    return sum(
        (
            Decimal(row["amount"])
            for row in rows
            if row["kind"] in kinds and (not field or row[field] == value)
        ),
        Decimal(0),
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_keyed_operations_take_effect_exactly_once_while_backends_are_killed(
    store: PortfolioStore, engine: Engine, database_url: str, record_property: Any
) -> None:
    pids = [store.create_portfolio(f"stress-{i}", INITIAL_CASH) for i in range(PORTFOLIOS)]
    stop, kills = threading.Event(), list[int]()
    killer = threading.Thread(target=_killer, args=(database_url, stop, kills))
    started = time.monotonic()
    killer.start()
    try:
        reports = _run_workers(database_url, pids)
    finally:
        stop.set()
        killer.join(timeout=30)
    seconds = time.monotonic() - started
    engine.dispose()  # its pooled connections may have been killed too

    outcomes = [outcome for report in reports for outcome in report["outcomes"]]
    caller_retries: collections.Counter[str] = collections.Counter()
    resolutions: collections.Counter[str] = collections.Counter()
    service_metrics: collections.Counter[str] = collections.Counter()
    for report in reports:
        caller_retries.update(report["caller_retries"])
        resolutions.update(report["resolutions"])
        service_metrics.update(report["metrics"])
    summary = {
        "operations": len(outcomes),
        "repeated_with_same_key": len([o for o in outcomes if "repeated_result" in o]),
        "kills": len(kills),
        "seconds": round(seconds, 1),
        "caller_retries": dict(caller_retries),
        "commit_outcomes_resolved": dict(resolutions),
        "service_metrics": dict(service_metrics),
    }
    print(f"\nstress: {summary}")
    for name, value in summary.items():
        record_property(name, value)

    assert len(outcomes) == PROCESSES * stress_worker.THREADS_PER_PROCESS * OPERATIONS_PER_THREAD
    assert all(outcome["result"] != "gave up" for outcome in outcomes)
    repeated = [outcome for outcome in outcomes if "repeated_result" in outcome]
    assert repeated
    assert all(outcome["repeated_result"] == outcome["result"] for outcome in repeated)
    assert kills, "the fault injector never terminated a backend"
    _assert_exactly_once(engine, store, pids, outcomes)


def _assert_exactly_once(
    engine: Engine, store: PortfolioStore, pids: list[UUID], outcomes: list[dict[str, Any]]
) -> None:
    with engine.connect() as connection:
        events_per_key: dict[str, int] = dict(
            connection.execute(
                text(
                    "SELECT idempotency_key, count(*) FROM portfolio_events "
                    "WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key"
                )
            ).all()
        )
        stored_keys = connection.execute(text("SELECT count(*) FROM idempotency_keys")).scalar()
        rows = {
            row.id: row
            for row in connection.execute(
                text(
                    "SELECT p.id, p.version, p.cash_balance, p.realized_pnl, p.total_deposits, "
                    "p.total_withdrawals, coalesce(sum(pos.cost_basis), 0) AS cost_basis, "
                    "(SELECT count(*) FROM portfolio_events e WHERE e.portfolio_id = p.id) "
                    "AS events FROM portfolios p LEFT JOIN positions pos "
                    "ON pos.portfolio_id = p.id AND pos.closed_at IS NULL GROUP BY p.id"
                )
            )
        }

    expected_events = {o["key"]: 2 if o["kind"] == "transfer" else 1 for o in outcomes}
    assert events_per_key == expected_events
    assert stored_keys == len(outcomes)

    for pid in pids:
        row, name = rows[pid], str(pid)
        deposits = _sum(outcomes, ("deposit",), "portfolio", name)
        deposits += _sum(outcomes, ("transfer",), "to", name)
        withdrawals = _sum(outcomes, ("withdraw", "transfer"), "portfolio", name)
        assert (row.total_deposits, row.total_withdrawals) == (deposits, withdrawals)
        assert row.version == row.events
        replayed = store.replay(pid)
        assert (replayed.cash_balance, replayed.realized_pnl, replayed.version) == (
            row.cash_balance,
            row.realized_pnl,
            row.version,
        )

    held = sum((r.cash_balance + r.cost_basis - r.realized_pnl for r in rows.values()), Decimal(0))
    external = _sum(outcomes, ("deposit",)) - _sum(outcomes, ("withdraw",))
    assert held == INITIAL_CASH * PORTFOLIOS + external
