"""A hypothesis state machine that drives a PortfolioStore and checks the library's invariants.

:class:`PortfolioStoreMachine` creates portfolios, applies random operations
(:func:`portfolio_core.testing.strategies.operations`, in every lock mode) and
transfers between them through a store, and runs the same commands on
in-memory twins. After every step it checks, on what the database holds:

- money is conserved: each portfolio's ``cash + open cost - realized P&L``
  equals its net contributions, cash is never negative, and all portfolios
  together hold exactly the money deposited from outside (transfers move it);
- versions == events: a portfolio at version n has the events 1..n, and n
  is one more than the changes it committed;
- replay == stored state: the audit trail replayed equals the stored portfolio;
- the stored portfolio equals its in-memory twin, and a step refused by the
  library is refused with the same error on both sides.

A service subclasses it: override :meth:`~PortfolioStoreMachine.run_operation`
and :meth:`~PortfolioStoreMachine.run_transfer` to route steps through the
service, list the service's own refusals in ``service_refusals`` (a refused
step must change nothing), and add ``@rule`` and ``@invariant`` methods; the
fresh stored snapshots are in ``self.stored``. Run it in a test with
``MyMachine.run(store)``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar, cast
from uuid import UUID

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from portfolio_core.domain.events import PortfolioEvent, PortfolioOperation
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.replay import reapply_operation, replay
from portfolio_core.errors import ValidationError
from portfolio_core.store import LOCK_MODES, PortfolioStore
from portfolio_core.store_call import LockMode
from portfolio_core.testing import strategies as pcst
from portfolio_core.testing.operations import (
    REFUSALS,
    execute_operation,
    money_moved,
)

__all__ = ["DEFAULT_SETTINGS", "PORTFOLIO_NAMES", "PortfolioStoreMachine", "portfolio_fields"]

PORTFOLIO_NAMES = st.sampled_from(("alpha", "beta", "gamma"))
"""Names of the machine's portfolios: names are not what it tests, and short ones shrink fast."""

DEFAULT_SETTINGS: settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    # One bug at a time: each failure found is shrunk on its own, and every
    # step of every shrink goes to the database.
    report_multiple_bugs=False,
    # No explain phase: it re-runs the failing case many more times, each against the database.
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow],
)
"""Settings of :meth:`PortfolioStoreMachine.run` when none are given (every step hits the DB)."""


def portfolio_fields(portfolio: Portfolio) -> dict[str, Any]:
    """The state a command may change, comparable with ``==`` (ids, timestamps, version aside)."""

    def position(p: Any) -> tuple[Any, ...]:
        return (p.symbol, p.quantity, p.cost_basis, p.current_price, p.realized_pnl, p.exit_price)

    return {
        "name": portfolio.name,
        "cash_balance": portfolio.cash_balance,
        "realized_pnl": portfolio.realized_pnl,
        "initial_cash": portfolio.initial_cash,
        "total_deposits": portfolio.total_deposits,
        "total_withdrawals": portfolio.total_withdrawals,
        "open": {symbol: position(p) for symbol, p in portfolio.positions.items()},
        "closed": sorted(position(p) for p in portfolio.closed_positions),
    }


def _require(holds: bool, message: str) -> None:
    # An explicit raise, not assert: this is library code and must check under -O too.
    if not holds:
        raise AssertionError(message)


def _verdict(command: Callable[[], object]) -> type[Exception] | None:
    try:
        command()
    except REFUSALS as refused:
        return type(refused)
    return None


class PortfolioStoreMachine(RuleBasedStateMachine):
    """Random operation sequences through a store, the library's invariants after each step."""

    portfolios = Bundle("portfolios")
    max_portfolios: ClassVar[int] = 3
    """How many portfolios one run creates at most."""
    service_refusals: ClassVar[tuple[type[Exception], ...]] = ()
    """Errors a subclass's service refuses a step with (the step must then change nothing)."""

    def __init__(self, store: PortfolioStore) -> None:
        super().__init__()
        self.store = store
        self.models: dict[UUID, Portfolio] = {}
        """The in-memory twin of each stored portfolio."""
        self.expected_versions: dict[UUID, int] = {}
        self.money_from_outside = Decimal(0)
        """Opening balances plus deposits minus withdrawals, over all portfolios."""
        self.stored: dict[UUID, Portfolio] = {}
        """Each portfolio as the database holds it, reloaded after every step that touched it."""
        self.histories: dict[UUID, list[PortfolioEvent]] = {}
        self.replayed: dict[UUID, Portfolio] = {}

    @classmethod
    def run(cls, store: PortfolioStore, *, settings: settings | None = None) -> None:
        """Run the machine against ``store`` (hypothesis draws, shrinks and reports a failure)."""
        # Hypothesis calls the factory it is given; its annotation only names classes.
        factory = cast("type[RuleBasedStateMachine]", lambda: cls(store))
        run_state_machine_as_test(factory, settings=settings or DEFAULT_SETTINGS)

    # -- the hooks a service overrides -------------------------------------------------

    def run_operation(
        self, portfolio_id: UUID, operation: PortfolioOperation, lock: LockMode
    ) -> None:
        """Apply one operation to the stored portfolio (default: straight through the store)."""
        execute_operation(self.store, portfolio_id, operation, lock=lock)

    def run_transfer(self, source: UUID, recipient: UUID, amount: Decimal) -> None:
        """Move cash between two stored portfolios (default: ``store.transfer``)."""
        self.store.transfer(source, recipient, amount)

    # -- rules ---------------------------------------------------------------------------

    @initialize(target=portfolios, name=PORTFOLIO_NAMES, cash=st.just(Decimal(0)) | pcst.amounts())
    def create_first_portfolio(self, name: str, cash: Decimal) -> UUID:
        """Every run starts with one portfolio."""
        return self._create(name, cash)

    @precondition(lambda self: len(self.models) < self.max_portfolios)
    @rule(target=portfolios, name=PORTFOLIO_NAMES, cash=st.just(Decimal(0)) | pcst.amounts())
    def create_portfolio(self, name: str, cash: Decimal) -> UUID:
        """Another portfolio (transfers need two)."""
        return self._create(name, cash)

    @rule(
        portfolio_id=portfolios,
        operation=pcst.operations(),
        lock=st.sampled_from(LOCK_MODES),
    )
    def apply(self, portfolio_id: UUID, operation: PortfolioOperation, lock: LockMode) -> None:
        """One domain operation on one portfolio, in one committed unit of work."""
        try:
            stored = _verdict(lambda: self.run_operation(portfolio_id, operation, lock))
        except self.service_refusals:
            self._refresh(portfolio_id)
            return
        model = self.models[portfolio_id]
        expected = _verdict(lambda: reapply_operation(model, operation))
        _require(stored is expected, f"{operation}: store said {stored}, model said {expected}")
        if expected is None:
            self.money_from_outside += money_moved(operation)
            self._committed(portfolio_id)
        self._refresh(portfolio_id)

    @rule(source=portfolios, recipient=portfolios, amount=pcst.amounts())
    def transfer(self, source: UUID, recipient: UUID, amount: Decimal) -> None:
        """Cash from one portfolio to another (or to itself, which is refused)."""
        try:
            stored = _verdict(lambda: self.run_transfer(source, recipient, amount))
        except self.service_refusals:
            self._refresh(source, recipient)
            return
        if source == recipient:
            expected: type[Exception] | None = ValidationError
        else:
            expected = _verdict(lambda: self.models[source].transfer_out(amount, recipient))
            if expected is None:
                # A credit of at most 10**12 to a balance far below 10**16 can not be refused.
                self.models[recipient].transfer_in(amount, source)
                self._committed(source)
                self._committed(recipient)
        _require(stored is expected, f"transfer {amount}: store said {stored}, model {expected}")
        self._refresh(source, recipient)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def money_is_conserved(self) -> None:
        """Per portfolio and over all of them, not a unit of money created or lost."""
        for pid, portfolio in self.stored.items():
            _require(portfolio.money_invariant_holds(), f"{pid}: money invariant broken")
            _require(portfolio.cash_balance >= 0, f"{pid}: negative cash {portfolio.cash_balance}")
        total = sum((p.net_contributions for p in self.stored.values()), Decimal(0))
        _require(total == self.money_from_outside, f"{total} held, {self.money_from_outside} in")

    @invariant()
    def versions_equal_events(self) -> None:
        """Version n means events 1..n, and one version per committed change."""
        for pid, portfolio in self.stored.items():
            versions = [event.version for event in self.histories[pid]]
            _require(versions == list(range(1, portfolio.version + 1)), f"{pid}: {versions}")
            expected = self.expected_versions[pid]
            _require(portfolio.version == expected, f"{pid}: v{portfolio.version}, not {expected}")

    @invariant()
    def replay_equals_stored_state(self) -> None:
        """The audit trail alone rebuilds what is stored."""
        for pid, portfolio in self.stored.items():
            replayed = portfolio_fields(self.replayed[pid])
            _require(replayed == portfolio_fields(portfolio), f"{pid}: replay {replayed}")

    @invariant()
    def stored_matches_the_model(self) -> None:
        """The database holds what the same commands did in memory."""
        for pid, portfolio in self.stored.items():
            model = portfolio_fields(self.models[pid])
            _require(portfolio_fields(portfolio) == model, f"{pid}: model {model}")

    # -- bookkeeping ---------------------------------------------------------------------

    def _create(self, name: str, cash: Decimal) -> UUID:
        pid = self.store.create_portfolio(name, cash)
        self.models[pid] = Portfolio(name, cash, id=pid)
        self.models[pid]._take_pending_operations()  # the creation is version 1
        self.expected_versions[pid] = 1
        self.money_from_outside += cash
        self._refresh(pid)
        return pid

    def _committed(self, portfolio_id: UUID) -> None:
        # A re-pricing that matched no open position records nothing: no new version.
        if self.models[portfolio_id]._take_pending_operations():
            self.expected_versions[portfolio_id] += 1

    def _refresh(self, *portfolio_ids: UUID) -> None:
        for pid in set(portfolio_ids):
            self.stored[pid] = self.store.get(pid)
            self.histories[pid] = self.store.history(pid)
            # What store.replay does, without a third round trip: replay the events read.
            self.replayed[pid] = replay(pid, self.histories[pid])
