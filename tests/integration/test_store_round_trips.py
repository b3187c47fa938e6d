"""The statements of one ``execute``: the lean path's round trips, exactly.

A deposit sends its load, then ONE statement: the versioned UPDATE of the
columns it changed with its event INSERT (a data-modifying CTE), then COMMIT;
a bounded ``"wait"`` sets its lock_timeout in the locking statement itself.
Anything more is a regression of the hot path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from portfolio_core import Portfolio, PortfolioStore, StaleDataException
from portfolio_core.store_call import LockMode
from tests.integration.helpers import commit_deposit_behind_the_back


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement ``engine`` sends in the block, whitespace collapsed."""
    sent: list[str] = []

    def note(*args: Any) -> None:
        sent.append(" ".join(str(args[2]).split()))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _shapes(sent: list[str]) -> list[str]:
    """Each statement's verb and table, and whether it locks or sets lock_timeout."""
    shapes = []
    for statement in sent:
        words = statement.split()
        if words[0] == "WITH":  # the row's UPDATE and its event's INSERT in one statement
            shapes.append(f"UPDATE {words[4]} + INSERT {words[words.index('INTO') + 1]}")
            continue
        shape = f"{words[0]} {words[1] if words[0] == 'UPDATE' else ''}".strip()
        if words[0] == "SELECT":
            shape = "SELECT portfolios"
            shape += " FOR UPDATE" if "FOR UPDATE" in statement else ""
            shape += " set_config" if "set_config(" in statement else ""
        if words[0] == "INSERT":
            shape = f"INSERT {words[2]}"
        shapes.append(shape)
    return shapes


_WRITES = ["UPDATE portfolios + INSERT portfolio_events"]


@pytest.mark.parametrize(
    ("lock", "expected"),
    [
        ("auto", ["SELECT portfolios", *_WRITES]),
        ("optimistic", ["SELECT portfolios", *_WRITES]),
        ("wait", ["SELECT portfolios FOR UPDATE set_config", *_WRITES]),
    ],
)
def test_a_deposit_is_a_load_one_update_and_its_event(
    store: PortfolioStore, engine: Engine, lock: LockMode, expected: list[str]
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))

    with statements(engine) as sent:
        store.execute(pid, lambda p: p.deposit(Decimal("1")), lock=lock)

    assert _shapes(sent) == expected
    update = sent[1]
    assert "WHERE portfolios.id = " in update
    assert "AND portfolios.version = " in update
    assert store.get(pid).cash_balance == Decimal("101")
    assert store.get(pid).version == 2


def test_a_lone_coalesced_deposit_is_a_locked_load_and_one_statement_for_row_and_event(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))

    with statements(engine) as sent:
        store.execute(pid, lambda p: p.deposit(Decimal("1")), coalesce=True)

    # The leader writes the batch's row and events in one statement (coalescing.grouped).
    assert _shapes(sent) == ["SELECT portfolios FOR UPDATE set_config", *_WRITES]
    assert store.get(pid).cash_balance == Decimal("101")
    assert store.get(pid).version == 2


def test_the_lean_update_still_refuses_a_stale_version(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))

    with store.unit_of_work() as uow:
        portfolio = uow.portfolios.get(pid)
        commit_deposit_behind_the_back(engine, pid)
        portfolio.deposit(Decimal("1"))
        with pytest.raises(StaleDataException) as raised:
            uow.commit()

    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)


def test_wait_keeps_its_lock_timeout_until_commit(store: PortfolioStore, engine: Engine) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))

    def deposit(portfolio: Any) -> None:
        portfolio.deposit(Decimal("1"))

    with statements(engine) as sent:
        store.execute(pid, deposit, lock="wait", lock_timeout=7)
    seen = [s for s in sent if "set_config" in s]

    assert len(seen) == 1
    with engine.connect() as connection:  # a new transaction: back to the server's setting
        assert connection.execute(text("SHOW lock_timeout")).scalar_one() == "0"


def test_a_listener_of_portfolio_updates_still_sees_each_one(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))
    seen: list[object] = []

    def listener(mapper: Any, connection: Any, target: Portfolio) -> None:
        seen.append(target.id)

    event.listen(Portfolio, "before_update", listener)
    try:
        store.execute(pid, lambda p: p.deposit(Decimal("1")))
    finally:
        event.remove(Portfolio, "before_update", listener)

    assert seen == [pid]
    assert store.get(pid).cash_balance == Decimal("101")


def test_after_an_earlier_flush_the_row_statement_writes_the_one_event_of_every_operation(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))

    with statements(engine) as sent, store.unit_of_work() as uow:
        portfolio = uow.portfolios.get(pid)
        portfolio.deposit(Decimal("5"))
        uow.session.flush()  # the bump to version 2 is written before COMMIT
        portfolio.withdraw(Decimal("2"))
        uow.commit()

    assert _shapes(sent) == ["SELECT portfolios", "UPDATE portfolios", *_WRITES]
    (event,) = store.history(pid, since_version=1)
    assert (event.version, [op.kind for op in event.operations]) == (2, ["deposit", "withdraw"])
    assert store.get(pid).cash_balance == Decimal("103")
    assert store.get(pid).version == 2


def test_a_second_portfolio_changed_only_earlier_sends_the_events_on_their_own(
    store: PortfolioStore, engine: Engine
) -> None:
    a = store.create_portfolio("a", Decimal("100"))
    b = store.create_portfolio("b", Decimal("100"))

    with statements(engine) as sent, store.unit_of_work() as uow:
        uow.portfolios.get(b).deposit(Decimal("1"))
        uow.session.flush()
        uow.portfolios.get(a).deposit(Decimal("2"))
        uow.commit()

    assert _shapes(sent)[-2:] == ["UPDATE portfolios", "INSERT portfolio_events"]
    assert [e.version for e in store.history(a)] == [1, 2]
    assert [e.version for e in store.history(b)] == [1, 2]


def test_the_row_statement_carries_the_idempotency_key(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))

    with statements(engine) as sent:
        store.execute(pid, lambda p: p.deposit(Decimal("1")), idempotency_key="row-key-1")

    assert "UPDATE portfolios + INSERT portfolio_events" in _shapes(sent)
    (event,) = store.history(pid, since_version=1)
    assert (event.version, event.idempotency_key) == (2, "row-key-1")
