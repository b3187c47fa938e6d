"""Scaling row: a repeated keyed ``execute`` at a short and at a long history.

A repeat of an idempotency key is compared against the state stored with the
key (``domain.snapshot``), so it should cost the same at 10 events and at
10,000. Reported as the ratio of the two medians, never asserted on time.
"""

from __future__ import annotations

import time
from decimal import Decimal
from statistics import median
from typing import Any
from uuid import UUID

from portfolio_core.bench.scenarios import Bench
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.units import Milliseconds

SHORT_HISTORY = 10
_DEPOSIT_EVENT = '[{"kind": "deposit", "arguments": {"amount": "1"}}]'


def _grow_history(bench: Bench, pid: str, events: int) -> None:
    """Bring ``pid`` to ``events`` events, each a recorded deposit of 1, in one transaction.

    Each event is written right after its version bump, as the event-version
    trigger requires; the state stays what replaying the events gives.
    """
    with bench.admin.cursor() as cursor:
        cursor.execute(
            "DO $$ BEGIN FOR v IN 2..%s LOOP "
            "UPDATE portfolios SET version = v, cash_balance = cash_balance + 1, "
            "total_deposits = total_deposits + 1 WHERE id = %s; "
            "INSERT INTO portfolio_events (portfolio_id, version, operations) "
            "VALUES (%s, v, %s); END LOOP; END $$",
            (events, pid, pid, _DEPOSIT_EVENT),
        )
        # The loop left one dead row version per bump: reclaim them, or every
        # later read walks them and the row measures the setup, not the repeat.
        cursor.execute("VACUUM portfolios")


def _deposit(portfolio: Portfolio) -> Decimal:
    portfolio.deposit(Decimal(1))
    return portfolio.cash_balance


def _repeat_ms(bench: Bench, events: int, repeats: int) -> Milliseconds:
    (pid,) = bench.portfolios(1)
    _grow_history(bench, pid, events)
    key = f"bench-repeat-{pid}"
    portfolio_id = UUID(pid)
    bench.store.execute(portfolio_id, _deposit, idempotency_key=key)
    timings: list[Milliseconds] = []
    for _ in range(repeats):
        started = time.perf_counter()
        bench.store.execute(portfolio_id, _deposit, idempotency_key=key)
        timings.append((time.perf_counter() - started) * 1000)
    return median(timings)


def keyed_repeat_scaling(bench: Bench, long_history: int, repeats: int) -> dict[str, Any]:
    """Median ms of a keyed repeat at SHORT_HISTORY and ``long_history`` events, and their ratio."""
    short_ms = _repeat_ms(bench, SHORT_HISTORY, repeats)
    long_ms = _repeat_ms(bench, long_history, repeats)
    return {
        "short_events": SHORT_HISTORY,
        "long_events": long_history,
        "repeats": repeats,
        "short_ms": round(short_ms, 3),
        "long_ms": round(long_ms, 3),
        "ratio": round(long_ms / short_ms, 3) if short_ms > 0 else None,
    }
