"""The store's main path against a real PostgreSQL: create, change, read back."""

from __future__ import annotations

from decimal import Decimal

from portfolio_core import PortfolioStore, PositionRequest


def test_store_round_trip_keeps_money_and_counts_versions(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal("10000"))
    store.execute(pid, lambda p: p.deposit(Decimal("250")))
    store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 10, "150")), lock="wait")
    store.execute(pid, lambda p: p.close_position("AAPL", "160", 4), lock="nowait")

    snapshot = store.get(pid)

    assert snapshot.version == 4
    assert snapshot.cash_balance == Decimal("9390")
    assert snapshot.realized_pnl == Decimal("40")
    assert snapshot.positions["AAPL"].quantity == Decimal("6")
    assert snapshot.money_invariant_holds()
