"""A database-backed portfolio and an in-memory model, driven side by side by hypothesis.

Every step runs the same command on the model and, in its own committed unit of
work, on the stored portfolio (through UnitOfWork, PortfolioStore.execute with
each lock mode, a detached snapshot saved with update_portfolio, or the
repository's single-statement re-pricing). After every step the stored
portfolio is reloaded and compared field by field with the model, and its
version must equal the number of committed changes + 1.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine

from portfolio_core import (
    InsufficientFundsError,
    Portfolio,
    PortfolioStore,
    PositionNotFoundError,
    PositionRequest,
    UnitOfWork,
    ValidationError,
)
from tests.integration.helpers import reload
from tests.property.strategies import SYMBOLS, cash_amounts, prices, quantities, scaled, symbols

Command = Callable[[Portfolio], object]
DOMAIN_ERRORS = (ValidationError, InsufficientFundsError, PositionNotFoundError)
PATHS = ("unit_of_work", "optimistic", "nowait", "wait", "snapshot")


def _partial_quantity(portfolio: Portfolio, symbol: str, fraction: Decimal) -> Decimal:
    held = portfolio.positions.get(symbol)
    if held is None:
        return fraction
    return max((held.quantity * fraction).quantize(Decimal("0.0001")), Decimal("0.0001"))


def _stored_state(portfolio: Portfolio) -> dict[str, Any]:
    return {
        "cash_balance": portfolio.cash_balance,
        "realized_pnl": portfolio.realized_pnl,
        "initial_cash": portfolio.initial_cash,
        "total_deposits": portfolio.total_deposits,
        "total_withdrawals": portfolio.total_withdrawals,
        "total_cost_basis": portfolio.total_cost_basis,
        "market_value": portfolio.market_value,
        "total_value": portfolio.total_value,
        "positions": {
            s: (p.quantity, p.cost_basis, p.current_price, p.realized_pnl)
            for s, p in portfolio.positions.items()
        },
        "closed": sorted(
            (p.symbol, p.quantity, p.exit_price, p.realized_pnl) for p in portfolio.closed_positions
        ),
    }


class PortfolioComparison(RuleBasedStateMachine):
    """The stored portfolio must behave exactly like the in-memory model."""

    engine: Engine
    store: PortfolioStore

    def __init__(self) -> None:
        super().__init__()
        self.model = Portfolio("model")
        self.pid: UUID | None = None
        self.committed = 0

    @initialize(cash=st.one_of(st.just(Decimal(0)), scaled(10**12, 2)))
    def create(self, cash: Decimal) -> None:
        self.model = Portfolio("model", cash)
        self.pid = self.store.create_portfolio("stored", cash)

    # -- running one command on both sides ----------------------------------------------

    def _apply(self, command: Command, path: str) -> None:
        assert self.pid is not None
        before = _stored_state(self.model)
        try:
            result = command(self.model)
        except DOMAIN_ERRORS as refused:
            expected: type[Exception] | None = type(refused)
            assert _stored_state(self.model) == before
        else:
            expected = None
        changed = expected is None and result != 0  # update_all_prices may match nothing

        stored_error: type[Exception] | None = None
        try:
            self._apply_stored(command, path)
        except DOMAIN_ERRORS as refused:
            stored_error = type(refused)
        # Same verdict on both sides: refused with the same error, or accepted.
        assert stored_error is expected
        if changed:
            self.committed += 1

    def _apply_stored(self, command: Command, path: str) -> None:
        assert self.pid is not None
        pid = self.pid
        if path == "unit_of_work":
            with UnitOfWork(self.engine) as uow:
                command(uow.portfolios.get(pid))
                uow.commit()
        elif path == "snapshot":
            snapshot = self.store.get(pid)
            command(snapshot)
            with UnitOfWork(self.engine) as uow:
                uow.portfolios.update_portfolio(snapshot)
                uow.commit()
        else:
            self.store.execute(pid, command, lock=path)  # type: ignore[arg-type]

    # -- rules ---------------------------------------------------------------------------

    @rule(symbol=symbols, quantity=quantities, price=prices, path=st.sampled_from(PATHS))
    def open_position(self, symbol: str, quantity: Decimal, price: Decimal, path: str) -> None:
        self._apply(lambda p: p.open_position(PositionRequest(symbol, quantity, price)), path)

    @rule(symbol=symbols, price=prices, path=st.sampled_from(PATHS))
    def close_all(self, symbol: str, price: Decimal, path: str) -> None:
        self._apply(lambda p: p.close_position(symbol, price), path)

    @rule(
        symbol=symbols,
        fraction=st.sampled_from([Decimal("0.5"), Decimal("0.3333"), Decimal("0.9999")]),
        price=prices,
        path=st.sampled_from(PATHS),
    )
    def close_part(self, symbol: str, fraction: Decimal, price: Decimal, path: str) -> None:
        quantity = _partial_quantity(self.model, symbol, fraction)
        self._apply(lambda p: p.close_position(symbol, price, quantity=quantity), path)

    @rule(symbol=symbols, price=prices, path=st.sampled_from(PATHS))
    def reprice_one(self, symbol: str, price: Decimal, path: str) -> None:
        self._apply(lambda p: p.update_position_price(symbol, price), path)

    @rule(new_prices=st.dictionaries(st.sampled_from((*SYMBOLS, "ZZZ")), prices, max_size=4))
    def reprice_all_in_sql(self, new_prices: dict[str, Decimal]) -> None:
        assert self.pid is not None
        expected = self.model.update_all_prices(new_prices)
        with UnitOfWork(self.engine) as uow:
            count = uow.portfolios.update_all_prices(self.pid, new_prices)
            uow.commit()
        assert count == expected
        self.committed += bool(count)

    @rule(amount=cash_amounts, path=st.sampled_from(PATHS))
    def deposit(self, amount: Decimal, path: str) -> None:
        self._apply(lambda p: p.deposit(amount), path)

    @rule(amount=cash_amounts, path=st.sampled_from(PATHS))
    def withdraw(self, amount: Decimal, path: str) -> None:
        self._apply(lambda p: p.withdraw(amount), path)

    # -- the comparison after every step -------------------------------------------------

    @invariant()
    def stored_matches_model(self) -> None:
        if self.pid is None:
            return
        stored = reload(self.engine, self.pid)
        assert _stored_state(stored) == _stored_state(self.model)
        assert len(stored.closed_positions) == len(self.model.closed_positions)
        assert stored.version == self.committed + 1
        assert stored.money_invariant_holds()


def test_stored_portfolio_behaves_like_the_in_memory_model(
    engine: Engine, store: PortfolioStore
) -> None:
    PortfolioComparison.engine = engine
    PortfolioComparison.store = store

    run_state_machine_as_test(
        PortfolioComparison,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
