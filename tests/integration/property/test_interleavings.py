"""Every interleaving of two units of work on one portfolio: never a lost update.

Two units of work (two sessions, two connections) are driven step by step
from one thread: load, apply, commit. Hypothesis picks the order of the six
steps and the amounts. Whatever the order, either both commit, or the later
committer -- exactly when it loaded before the other committed -- gets
StaleDataException; re-running it in a fresh unit of work applies it too.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from decimal import Decimal
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from portfolio_core import Portfolio, PortfolioStore, StaleDataException, UnitOfWork

OPENING = Decimal("1000")

Change = tuple[str, Decimal]


class SteppedWriter:
    """A unit of work whose load, apply and commit are run one call at a time."""

    def __init__(self, engine: Engine, pid: UUID, change: Change) -> None:
        self.engine = engine
        self.pid = pid
        self.change = change
        self.steps_done = 0
        self.stale: StaleDataException | None = None
        self._stack = ExitStack()
        self._portfolio: Portfolio | None = None

    def step(self) -> None:
        if self.steps_done == 0:
            uow = self._stack.enter_context(UnitOfWork(self.engine))
            self._uow = uow
            self._portfolio = uow.portfolios.get(self.pid)
        elif self.steps_done == 1:
            assert self._portfolio is not None
            apply(self.change)(self._portfolio)
        else:
            try:
                self._uow.commit()
            except StaleDataException as error:
                self.stale = error
            finally:
                self._stack.close()
        self.steps_done += 1


def apply(change: Change) -> Callable[[Portfolio], None]:
    kind, amount = change
    if kind == "deposit":
        return lambda portfolio: portfolio.deposit(amount)
    return lambda portfolio: portfolio.withdraw(amount)


def effect(change: Change) -> Decimal:
    kind, amount = change
    return amount if kind == "deposit" else -amount


changes = st.tuples(
    st.sampled_from(["deposit", "withdraw"]),
    st.integers(min_value=1, max_value=50_000).map(lambda cents: Decimal(cents) / 100),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    order=st.permutations(["A", "A", "A", "B", "B", "B"]),
    change_a=changes,
    change_b=changes,
)
def test_no_interleaving_of_two_units_of_work_loses_an_update(
    store: PortfolioStore, engine: Engine, order: list[str], change_a: Change, change_b: Change
) -> None:
    pid = store.create_portfolio("contended", OPENING)
    writers = {
        "A": SteppedWriter(engine, pid, change_a),
        "B": SteppedWriter(engine, pid, change_b),
    }
    committed_at: dict[str, int] = {}
    loaded_at: dict[str, int] = {}
    for index, name in enumerate(order):
        writer = writers[name]
        if writer.steps_done == 0:
            loaded_at[name] = index
        if writer.steps_done == 2:
            committed_at[name] = index
        writer.step()

    first, later = sorted(committed_at, key=committed_at.__getitem__)
    later_is_stale = loaded_at[later] < committed_at[first]
    assert writers[first].stale is None
    assert (writers[later].stale is not None) == later_is_stale
    stale = writers[later].stale
    if stale is not None:
        assert (stale.entity_id, stale.expected_version, stale.actual_version) == (pid, 1, 2)
        # The retry: a fresh unit of work reloads, re-applies and commits.
        store.execute(pid, apply(writers[later].change))

    after = store.get(pid)
    assert after.cash_balance == OPENING + effect(change_a) + effect(change_b)
    assert after.version == 3
    assert after.money_invariant_holds()
