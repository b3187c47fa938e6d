"""What the store gives back prints in fixed-point notation: 0.00000000, not 0E-8."""

from __future__ import annotations

import json
from decimal import Decimal

from portfolio_core import Portfolio, PortfolioStore, PositionRequest
from portfolio_core.domain.money import FixedPoint


def _cash(portfolio: Portfolio) -> Decimal:
    portfolio.deposit(Decimal("0.00000001"))
    return portfolio.cash_balance


def test_snapshot_results_history_and_replay_print_without_exponent(
    store: PortfolioStore,
) -> None:
    pid = store.create_portfolio("alpha", 0)
    first = store.execute(pid, _cash, idempotency_key="tiny")
    repeated = store.execute(pid, _cash, idempotency_key="tiny")
    store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", "0.5", "0.00000002")))

    snapshot = store.get(pid)
    fields = {
        name: getattr(snapshot, name)
        for name in ("cash_balance", "realized_pnl", "initial_cash", "total_withdrawals")
    }
    assert json.dumps(fields, default=str) == json.dumps(
        {
            "cash_balance": "0.00000000",
            "realized_pnl": "0.00000000",
            "initial_cash": "0.00000000",
            "total_withdrawals": "0.00000000",
        }
    )
    position = snapshot.positions["AAPL"]
    assert (str(position.cost_basis), str(position.current_price)) == ("0.00000001", "0.00000002")
    assert (str(first), str(repeated)) == ("0.00000001", "0.00000001")
    assert type(repeated) is FixedPoint  # the stored result, decoded
    amounts = [
        str(value)
        for event in store.history(pid)
        for op in event.operations
        for value in op.arguments.values()
        if isinstance(value, Decimal)
    ]
    assert amounts == ["0", "0.00000001", "0.5", "0.00000002"]
    assert str(store.replay(pid).cash_balance) == "0.00000000"
    assert snapshot.cash_balance == Decimal("0E-8")  # the value itself is unchanged
