"""A repeated keyed ``execute`` is compared against the state stored with its key."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, event

from portfolio_core import IdempotencyConflictError, Portfolio, PortfolioStore, PositionRequest


def _buy(portfolio: Portfolio) -> Decimal:
    portfolio.open_position(PositionRequest("AAPL", 2, "10.5"))
    return portfolio.cash_balance


def _statements_during(engine: Engine, run: Any) -> list[str]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_a_repeat_reads_no_history(store: PortfolioStore, engine: Engine) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))
    for _ in range(5):
        store.execute(pid, lambda p: p.deposit(1))
    first = store.execute(pid, _buy, idempotency_key="buy-1")
    for _ in range(5):
        store.execute(pid, lambda p: p.deposit(1))

    statements = _statements_during(
        engine, lambda: store.execute(pid, _buy, idempotency_key="buy-1")
    )

    assert store.execute(pid, _buy, idempotency_key="buy-1") == first
    assert not [sql for sql in statements if "portfolio_events" in sql]
    assert len(store.history(pid)) == 12


def test_a_repeat_with_another_request_still_conflicts(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))
    store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 1, 3)))
    store.execute(pid, _buy, idempotency_key="buy-1")

    with pytest.raises(IdempotencyConflictError):
        store.execute(
            pid,
            lambda p: p.close_position("AAPL", 4, 1),
            idempotency_key="buy-1",
        )
    # Its prior state had AAPL at 1 share: the same buy repeated is still the same request.
    assert store.execute(pid, _buy, idempotency_key="buy-1") == Decimal(1000 - 3 - 21)
