"""Property: for any sequence of operations through the store, the events tell the whole story.

replay(latest) equals the stored portfolio field by field (ids and wall-clock
timestamps aside), there is one event per committed change plus the creation
(``len(history) == version``), and the money invariant holds on both.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portfolio_core import (
    InsufficientFundsError,
    Portfolio,
    PortfolioStore,
    PositionNotFoundError,
    PositionRequest,
    UnitOfWork,
    ValidationError,
)

SYMBOLS = ("AAPL", "MSFT", "BRK.B")
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2)
prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500"), places=2)
quantities = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("50"), places=4)
symbols = st.sampled_from(SYMBOLS)

steps = st.one_of(
    st.tuples(st.just("deposit"), amounts),
    st.tuples(st.just("withdraw"), amounts),
    st.tuples(st.just("buy"), symbols, quantities, prices),
    st.tuples(st.just("sell"), symbols, prices, st.none() | quantities),
    st.tuples(st.just("reprice"), symbols, prices),
    st.tuples(st.just("reprice_all_sql"), st.dictionaries(symbols, prices, min_size=1)),
    st.tuples(st.just("reprice_all"), st.dictionaries(symbols, prices, min_size=1)),
    st.tuples(st.just("set_cash"), amounts),
    st.tuples(st.just("transfer_in"), amounts),
    st.tuples(st.just("transfer_out"), amounts),
    st.tuples(st.just("buy_then_deposit"), symbols, quantities, prices, amounts),
)

EXPECTED_FAILURES = (InsufficientFundsError, PositionNotFoundError, ValidationError)


def _apply(store: PortfolioStore, pid: UUID, bank: UUID, step: tuple[Any, ...]) -> bool:
    """Run one step; True if it committed a change."""
    kind, *args = step
    if kind == "deposit":
        store.execute(pid, lambda p: p.deposit(args[0]))
    elif kind == "withdraw":
        store.execute(pid, lambda p: p.withdraw(args[0]))
    elif kind == "buy":
        store.execute(pid, lambda p: p.open_position(PositionRequest(args[0], args[1], args[2])))
    elif kind == "sell":
        store.execute(pid, lambda p: p.close_position(args[0], args[1], args[2]), lock="wait")
    elif kind == "reprice":
        store.execute(pid, lambda p: p.update_position_price(args[0], args[1]))
    elif kind == "reprice_all_sql":
        return store.update_all_prices(pid, args[0]) > 0
    elif kind == "reprice_all":
        return store.execute(pid, lambda p: p.update_all_prices(args[0])) > 0
    elif kind == "set_cash":
        with UnitOfWork(store.engine) as uow:
            version = uow.portfolios.get(pid).version
            uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": args[0]}, version)
            uow.commit()
    elif kind == "transfer_in":
        store.transfer(bank, pid, args[0])
    elif kind == "transfer_out":
        store.transfer(pid, bank, args[0])
    else:

        def buy_then_deposit(portfolio: Portfolio) -> None:
            portfolio.open_position(PositionRequest(args[0], args[1], args[2]))
            portfolio.deposit(args[3])

        store.execute(pid, buy_then_deposit)
    return True


def _fields(portfolio: Portfolio) -> dict[str, Any]:
    def position_fields(p: Any) -> tuple[Any, ...]:
        return (p.symbol, p.quantity, p.cost_basis, p.current_price, p.realized_pnl, p.exit_price)

    return {
        "id": portfolio.id,
        "name": portfolio.name,
        "version": portfolio.version,
        "cash_balance": portfolio.cash_balance,
        "realized_pnl": portfolio.realized_pnl,
        "initial_cash": portfolio.initial_cash,
        "total_deposits": portfolio.total_deposits,
        "total_withdrawals": portfolio.total_withdrawals,
        "open": {s: position_fields(p) for s, p in portfolio.positions.items()},
        "closed": sorted(position_fields(p) for p in portfolio.closed_positions),
    }


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(initial=amounts, sequence=st.lists(steps, min_size=1, max_size=12))
def test_replay_of_the_events_equals_the_stored_portfolio(
    store: PortfolioStore, initial: Decimal, sequence: list[tuple[Any, ...]]
) -> None:
    pid = store.create_portfolio("prop", initial)
    bank = store.create_portfolio("bank", Decimal("1000000"))
    committed = 0
    for step in sequence:
        with contextlib.suppress(*EXPECTED_FAILURES):  # refused steps commit nothing
            committed += _apply(store, pid, bank, step)

    stored, replayed, history = store.get(pid), store.replay(pid), store.history(pid)

    assert _fields(replayed) == _fields(stored)
    assert stored.version == committed + 1 == len(history)
    assert [event.version for event in history] == list(range(1, stored.version + 1))
    assert stored.money_invariant_holds()
    assert replayed.money_invariant_holds()
    for version in range(1, stored.version + 1):
        assert store.replay(pid, version).version == version
