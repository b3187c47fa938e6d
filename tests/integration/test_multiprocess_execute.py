"""Four OS processes hammer ONE portfolio through PortfolioStore.execute in each lock mode.

Every process builds its own engine (spawn context); all four start each mode
together at a barrier. No update may be lost: the balance and the version
count every deposit exactly once.
"""

from __future__ import annotations

import multiprocessing
from decimal import Decimal
from typing import Any
from uuid import UUID

from portfolio_core import PortfolioStore
from portfolio_core.store import LOCK_MODES, LockMode
from tests.integration.workers import WAIT, deposit_in_each_mode

PROCESSES = 4
DEPOSITS_EACH = 25


def test_four_processes_lose_no_deposit_in_any_lock_mode(
    store: PortfolioStore, database_url: str
) -> None:
    opening = Decimal("1000")
    portfolio_by_mode: dict[LockMode, UUID] = {
        mode: store.create_portfolio(f"hot-{mode}", opening) for mode in LOCK_MODES
    }
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results: Any = context.Queue()
    children = [
        context.Process(
            target=deposit_in_each_mode,
            args=(database_url, portfolio_by_mode, DEPOSITS_EACH, start, results),
        )
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    try:
        reports = [results.get(timeout=4 * WAIT) for _ in children]
    finally:
        for child in children:
            child.join(WAIT)
            if child.is_alive():  # pragma: no cover - only on a hang
                child.kill()

    errors = [report["error"] for report in reports if "error" in report]
    assert errors == []
    total = PROCESSES * DEPOSITS_EACH
    for mode, pid in portfolio_by_mode.items():
        after = store.get(pid)
        assert (mode, after.cash_balance) == (mode, opening + total)
        assert (mode, after.version) == (mode, 1 + total)
        assert after.money_invariant_holds()
        assert sum(report[mode]["failed_retries"] for report in reports) == 0
    # Waiting for the row lock serializes the writers: never a conflict, never a refusal.
    waited = [report["wait"] for report in reports]
    assert sum(m["version_conflicts"] + m["lock_timeouts"] for m in waited) == 0
