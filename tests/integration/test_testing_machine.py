"""The kit's state machine passes on the library as it is, and catches a store that lies."""

from __future__ import annotations

from decimal import Decimal
from typing import cast
from uuid import UUID

import pytest
from hypothesis import Phase, settings

from portfolio_core import PortfolioStore
from portfolio_core.store_call import LockMode
from portfolio_core.testing.machine import DEFAULT_SETTINGS, PortfolioStoreMachine
from portfolio_core.testing.operations import execute_operation

QUICK = settings(
    DEFAULT_SETTINGS,
    max_examples=8,
    stateful_step_count=10,
    database=None,
)


def test_the_library_keeps_every_invariant_of_the_machine(store: PortfolioStore) -> None:
    PortfolioStoreMachine.run(store, settings=settings(QUICK, max_examples=20))


class DoubleDeposits(PortfolioStoreMachine):
    """A 'service' that books every deposit twice: the model comparison must notice."""

    def run_operation(self, portfolio_id: UUID, operation: object, lock: LockMode) -> None:
        execute_operation(self.store, portfolio_id, operation, lock=lock)  # type: ignore[arg-type]
        if getattr(operation, "kind", None) == "deposit":
            amount = operation.arguments["amount"]  # type: ignore[attr-defined]
            self.store.execute(portfolio_id, lambda p: p.deposit(amount))


def test_a_service_that_changes_money_behind_the_model_is_caught(store: PortfolioStore) -> None:
    with pytest.raises(AssertionError) as caught:
        DoubleDeposits.run(
            # Found is enough here (shrinking is the example's test): skip the shrink phase.
            store,
            settings=settings(QUICK, max_examples=50, phases=[Phase.generate]),
        )
    # report_multiple_bugs=False (the default settings): one plain AssertionError.
    assert "held" in str(caught.value) or "model" in str(caught.value)


def test_the_machine_starts_from_one_portfolio(store: PortfolioStore) -> None:
    machine = PortfolioStoreMachine(store)
    pid = cast(UUID, machine.create_first_portfolio("first", Decimal("10")))
    machine.money_is_conserved()
    machine.versions_equal_events()
    machine.replay_equals_stored_state()
    machine.stored_matches_the_model()
    assert machine.stored[pid].cash_balance == Decimal("10")
