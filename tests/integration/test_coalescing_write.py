"""How a coalesced batch writes: its row and its events in one statement, when it can.

A batch that changed only portfolio columns sends row_flush's combined
statement (the versioned UPDATE v -> v + N and the N events, unnested, in one
``WITH bumped AS (UPDATE ...) INSERT ...``); one whose operations changed
positions keeps the ORM's flush and writes its events after it. Either way the
versions, events and keys agree. A stale row writes neither row nor events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm.exc import StaleDataError

from portfolio_core import (
    Portfolio,
    PortfolioCoreError,
    PortfolioStore,
    PositionRequest,
    StaleDataException,
    UnitOfWork,
)
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.persistence.session import flush_with_batch_events
from portfolio_core.persistence.transaction_state import transaction_state
from tests.integration.coalescing_tools import (
    Call,
    committed_state,
    event_rows,
    key_count,
    piled_up,
)


@pytest.fixture
def coalescing(engine: Engine, service: ConcurrencyService) -> PortfolioStore:
    return PortfolioStore(engine, service, coalesce=True)


@contextmanager
def writes(engine: Engine) -> Iterator[list[str]]:
    """The statements sent in the block that write portfolios or events."""
    seen: list[str] = []

    def capture(*args: Any) -> None:
        statement = str(args[2])
        if "portfolio_events" in statement or "UPDATE portfolios" in statement:
            seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def deposit(amount: str) -> Callable[[Portfolio], Decimal]:
    def operation(portfolio: Portfolio) -> Decimal:
        portfolio.deposit(Decimal(amount))
        return portfolio.cash_balance

    return operation


def open_aapl(portfolio: Portfolio) -> Decimal:
    portfolio.open_position(PositionRequest("AAPL", Decimal("2"), Decimal("10")))
    return portfolio.cash_balance


def test_a_batch_of_cash_changes_writes_its_row_and_events_in_one_statement(
    coalescing: PortfolioStore, engine: Engine
) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    keys = ["k1", None, "k3", None]
    calls: list[Call] = [
        partial(coalescing.execute_versioned, pid, deposit(str(i)), idempotency_key=key)
        for i, key in enumerate(keys, start=1)
    ]
    with writes(engine) as statements:
        outcomes = piled_up(coalescing, engine, pid, calls)
    assert [(o.result.result, o.result.version) for o in outcomes] == [
        (Decimal("101"), 2),
        (Decimal("103"), 3),
        (Decimal("106"), 4),
        (Decimal("110"), 5),
    ]
    # One statement wrote the row (1 -> 5) and the four events; nothing else did.
    assert len(statements) == 1, statements
    assert statements[0].startswith("WITH bumped AS (UPDATE portfolios")
    assert "INSERT INTO portfolio_events" in statements[0]
    assert committed_state(engine, pid) == (5, Decimal("110"), 5)
    assert [(v, k) for v, k, _ in event_rows(engine, pid)[1:]] == list(
        zip(range(2, 6), keys, strict=True)
    )
    assert key_count(engine, "k1") == key_count(engine, "k3") == 1
    for outcome in outcomes:
        assert coalescing.replay(pid, outcome.result.version).cash_balance == outcome.result.result
    # A keyed repeat after the batch: its stored result, nothing written again.
    again = coalescing.execute_versioned(pid, deposit("1"), idempotency_key="k1")
    assert again.result == Decimal("101")
    assert committed_state(engine, pid) == (5, Decimal("110"), 5)


def test_a_batch_that_opens_a_position_keeps_the_orm_flush_and_writes_its_events_after(
    coalescing: PortfolioStore, engine: Engine
) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    calls: list[Call] = [
        partial(coalescing.execute_versioned, pid, deposit("5")),
        partial(coalescing.execute_versioned, pid, open_aapl, idempotency_key="open"),
        partial(coalescing.execute_versioned, pid, deposit("7")),
    ]
    with writes(engine) as statements:
        outcomes = piled_up(coalescing, engine, pid, calls)
    assert [(o.result.result, o.result.version) for o in outcomes] == [
        (Decimal("105"), 2),
        (Decimal("85"), 3),
        (Decimal("92"), 4),
    ]
    assert not any(s.startswith("WITH bumped") for s in statements), statements
    assert sum("INSERT INTO portfolio_events" in s for s in statements) == 1
    assert committed_state(engine, pid) == (4, Decimal("92"), 4)
    assert [(v, k) for v, k, _ in event_rows(engine, pid)] == [
        (1, None),
        (2, None),
        (3, "open"),
        (4, None),
    ]
    assert set(coalescing.replay(pid, 3).positions) == {"AAPL"}
    assert coalescing.replay(pid, 4).cash_balance == Decimal("92")
    assert len(coalescing.history(pid)) == coalescing.get(pid).version


def test_a_stale_row_takes_neither_its_update_nor_its_events(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))
    with UnitOfWork(engine) as uow:
        portfolio = uow.portfolios.get(pid)
        portfolio.deposit(Decimal("1"))
        portfolio.deposit(Decimal("2"))
        # Two changes, 1 -> 3, as a batch moves the row (its bump told it is done).
        transaction_state(uow.session).start_versions[pid] = 1
        portfolio._version = 3
        with engine.begin() as other:  # another writer moved the row meanwhile
            other.execute(text("UPDATE portfolios SET version = 2 WHERE id = :p"), {"p": pid})
            other.execute(
                text(
                    "INSERT INTO portfolio_events (portfolio_id, version, operations) "
                    "VALUES (:p, 2, CAST('[]' AS jsonb))"
                ),
                {"p": pid},
            )
        events = {
            pid: {
                "_event_versions": [2, 3],
                "_event_operations": ["[]", "[]"],
                "_event_keys": [None, None],
            }
        }
        with pytest.raises(StaleDataException) as raised:
            flush_with_batch_events(uow.session, events)
        # The statement's own version check (not the clash of event 2 with the
        # other writer's): it matched no row, so it inserted no event either.
        assert isinstance(raised.value.__cause__, StaleDataError)
    assert committed_state(engine, pid) == (2, Decimal("100"), 2)


def test_a_batch_whose_events_skip_a_version_is_refused_before_any_sql(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))
    with UnitOfWork(engine) as uow:
        portfolio = uow.portfolios.get(pid)
        portfolio.deposit(Decimal("1"))
        portfolio.deposit(Decimal("2"))
        transaction_state(uow.session).start_versions[pid] = 1
        portfolio._version = 3
        one_event = {"_event_versions": [3], "_event_operations": ["[]"], "_event_keys": [None]}
        with pytest.raises(PortfolioCoreError, match=r"do not take portfolio .* from version 1"):
            flush_with_batch_events(uow.session, {pid: one_event})
    assert committed_state(engine, pid) == (1, Decimal("100"), 1)
