"""Example: a service's own tests on top of portfolio_core.testing.

The service below trades through a PortfolioStore and enforces one business
rule of its own: no portfolio may hold more than 20% of its value in one
symbol. Its tests use the plugin's ``store`` fixture (a fresh migrated
database per test) and subclass the kit's state machine, which keeps
checking the library's invariants while this module adds the rule's.

Run it with ``pytest examples/test_concentration_limit.py`` once
``portfolio-core[testing]`` is installed. Set ``BREAK_CONCENTRATION_RULE=1``
to break the rule on purpose: the service then sizes its "buy up to the
limit" orders forgetting what the portfolio already holds of the symbol,
and trusts them unchecked. Hypothesis finds a sequence that breaks the rule
and shrinks it to a few steps (a portfolio, two such orders).
"""

from __future__ import annotations

import os
from decimal import ROUND_DOWN, Decimal
from uuid import UUID

from hypothesis import settings, target
from hypothesis.stateful import invariant, rule

from portfolio_core import Portfolio, PortfolioOperation, PortfolioStore, ValidationError
from portfolio_core.domain.replay import reapply_operation
from portfolio_core.store_call import LockMode
from portfolio_core.testing import strategies as pcst
from portfolio_core.testing.machine import DEFAULT_SETTINGS, PortfolioStoreMachine

LIMIT = Decimal("0.2")
BROKEN = os.environ.get("BREAK_CONCENTRATION_RULE") == "1"


class ConcentrationError(Exception):
    """The step would leave more than 20% of the portfolio's value in one symbol."""


def concentration_holds(portfolio: Portfolio) -> bool:
    """No open position is worth more than LIMIT of the portfolio's total value."""
    total = portfolio.total_value
    return all(p.market_value <= LIMIT * total for p in portfolio.positions.values())


def largest_share(portfolio: Portfolio) -> Decimal:
    """The largest fraction of the portfolio's value held in one symbol (0 when it is empty)."""
    total = portfolio.total_value
    values = [p.market_value for p in portfolio.positions.values()]
    return max(values) / total if values and total else Decimal(0)


class TradingService:
    """The service under test: every change goes through the rule, in the same unit of work."""

    def __init__(self, store: PortfolioStore) -> None:
        self.store = store

    def size_order(
        self, portfolio: Portfolio, symbol: str, price: Decimal
    ) -> PortfolioOperation | None:
        """The largest purchase of ``symbol`` at ``price`` the rule allows (None: no room)."""
        held = portfolio.positions.get(symbol)
        # The bug, when broken on purpose: what is already held is forgotten.
        held_value = held.market_value if held is not None and not BROKEN else Decimal(0)
        room = LIMIT * portfolio.total_value - held_value
        quantity = (room / price).quantize(Decimal("0.0001"), ROUND_DOWN)
        if quantity <= 0:
            return None
        arguments: dict[str, Decimal | str] = {
            "symbol": symbol,
            "quantity": quantity,
            "entry_price": price,
        }
        return PortfolioOperation("open_position", arguments)

    def apply(
        self,
        portfolio_id: UUID,
        operation: PortfolioOperation,
        lock: LockMode,
        *,
        sized_by_the_service: bool = False,
    ) -> None:
        """Apply ``operation``; refuse it (nothing is committed) if it breaks the rule."""
        trusted = BROKEN and sized_by_the_service  # the broken service skips its own orders

        def checked(portfolio: Portfolio) -> None:
            reapply_operation(portfolio, operation)
            if not trusted and not concentration_holds(portfolio):
                raise ConcentrationError(portfolio.id)  # rolls the unit of work back

        self.store.execute(portfolio_id, checked, lock=lock)

    def transfer(self, source: UUID, recipient: UUID, amount: Decimal) -> None:
        """Move cash, unless the paying portfolio would break the rule."""
        if source == recipient:
            raise ValidationError("recipient", recipient, "must differ from the source")

        def pay(portfolio: Portfolio) -> None:
            portfolio.transfer_out(amount, recipient)
            if not concentration_holds(portfolio):
                raise ConcentrationError(portfolio.id)

        self.store.batch_update(
            {source: pay, recipient: lambda portfolio: portfolio.transfer_in(amount, source)}
        )


class ConcentrationMachine(PortfolioStoreMachine):
    """The library's invariants, plus the service's rule, after every random step."""

    service_refusals = (ConcentrationError,)

    def __init__(self, store: PortfolioStore) -> None:
        super().__init__(store)
        self.service = TradingService(store)
        self.largest_share = Decimal(0)
        self.sizing = False

    def run_operation(
        self, portfolio_id: UUID, operation: PortfolioOperation, lock: LockMode
    ) -> None:
        self.service.apply(portfolio_id, operation, lock, sized_by_the_service=self.sizing)

    def run_transfer(self, source: UUID, recipient: UUID, amount: Decimal) -> None:
        self.service.transfer(source, recipient, amount)

    @rule(
        portfolio_id=PortfolioStoreMachine.portfolios,
        symbol=pcst.symbols(pcst.DEFAULT_SYMBOLS),
        price=pcst.prices(),
    )
    def buy_up_to_the_limit(self, portfolio_id: UUID, symbol: str, price: Decimal) -> None:
        """The service's own order type: the largest purchase the rule allows."""
        order = self.service.size_order(self.stored[portfolio_id], symbol, price)
        if order is None:
            return
        self.sizing = True
        try:
            self.apply(portfolio_id, order, "optimistic")
        finally:
            self.sizing = False

    @invariant()
    def no_symbol_holds_more_than_20_percent(self) -> None:
        for portfolio in self.stored.values():
            assert concentration_holds(portfolio), portfolio.positions
            self.largest_share = max(self.largest_share, largest_share(portfolio))

    def teardown(self) -> None:
        # Guide hypothesis towards portfolios near the limit, where a broken rule shows.
        target(float(self.largest_share), label="largest share of one symbol")


def test_a_purchase_over_the_limit_is_refused_and_changes_nothing(store: PortfolioStore) -> None:
    service = TradingService(store)
    pid = store.create_portfolio("alpha", Decimal("1000"))
    buy = PortfolioOperation(
        "open_position", {"symbol": "AAA", "quantity": Decimal(3), "entry_price": Decimal(100)}
    )
    try:
        service.apply(pid, buy, "optimistic")
    except ConcentrationError:
        pass
    else:
        raise AssertionError("a 30% position was accepted")
    assert store.get(pid).positions == {}
    assert store.get(pid).version == 1


def test_no_sequence_of_operations_breaks_the_concentration_rule(store: PortfolioStore) -> None:
    # Hunting a bug on purpose deserves more examples than the everyday run.
    examples = 150 if BROKEN else 30
    ConcentrationMachine.run(
        store, settings=settings(DEFAULT_SETTINGS, max_examples=examples, stateful_step_count=8)
    )
