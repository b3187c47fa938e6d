"""A command on one symbol costs the same with 1 or many open positions (issue 13, item 4).

Cost is asserted without timing: the SQL statements a store call sends and
the rows they return (``after_cursor_execute``) must not grow with the number
of positions the portfolio holds. The domain's rules are checked on the
fetched-one-by-one path too: reads see positions opened and closed in the
same unit of work, and the money invariant holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine, event, insert, text

from portfolio_core import Portfolio, PortfolioStore, PositionRequest
from portfolio_core.domain.position_book import PositionBook
from portfolio_core.errors import PositionNotFoundError
from portfolio_core.persistence.schema import positions

MANY = 300


@dataclass
class Traffic:
    """What the engine sent and fetched during a block."""

    statements: list[str] = field(default_factory=list)
    rows_returned: int = 0


@contextmanager
def traffic(engine: Engine) -> Iterator[Traffic]:
    seen = Traffic()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.statements.append(statement.split()[0].upper())
        if cursor.description is not None:
            seen.rows_returned += max(cursor.rowcount, 0)

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine, "after_cursor_execute", after)


def holding(store: PortfolioStore, engine: Engine, count: int) -> UUID:
    """A portfolio with ``count`` open positions (S0...), bulk-inserted for speed."""
    pid = store.create_portfolio("p", Decimal("1000000"))
    store.execute(pid, lambda p: p.open_position(PositionRequest("S0", 1, "1")))
    if count > 1:
        # The library's own rows and events matter here only for S0: the rest
        # are there to be (not) loaded. Cash stays consistent with a deposit.
        with engine.begin() as connection:
            connection.execute(
                insert(positions),
                [
                    {
                        "id": UUID(int=i),
                        "portfolio_id": pid,
                        "symbol": f"B{i}",
                        "quantity": Decimal(1),
                        "cost_basis": Decimal(0),
                        "current_price": Decimal(1),
                        "version": 1,
                    }
                    for i in range(1, count)
                ],
            )
    return pid


def cost_of(engine: Engine, call: Callable[[], object]) -> tuple[list[str], int]:
    with traffic(engine) as seen:
        call()
    return seen.statements, seen.rows_returned


@pytest.mark.parametrize(
    "command",
    [
        lambda p: p.open_position(PositionRequest("NEW", 2, "3")),
        lambda p: p.open_position(PositionRequest("S0", 2, "3")),
        lambda p: p.close_position("S0", "2"),
        lambda p: p.close_position("S0", "2", quantity=Decimal("0.5")),
        lambda p: p.update_position_price("S0", "7"),
    ],
    ids=["open-new", "open-add", "close", "partial-close", "price"],
)
def test_one_symbol_costs_the_same_statements_and_rows_with_many_positions(
    store: PortfolioStore, engine: Engine, command: Callable[[Portfolio], object]
) -> None:
    one, many = holding(store, engine, 1), holding(store, engine, MANY)

    costs = [cost_of(engine, partial(store.execute, pid, command)) for pid in (one, many)]

    assert costs[0] == costs[1]
    assert costs[1][1] <= 3  # the portfolio row, the position, nothing per position
    assert store.get(many).money_invariant_holds()


def test_opening_n_positions_in_one_execute_indexes_each_position_a_bounded_number_of_times(
    store: PortfolioStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed = 0
    original = PositionBook._index

    def counting(book: PositionBook, position: Any) -> None:
        nonlocal indexed
        indexed += 1
        original(book, position)

    monkeypatch.setattr(PositionBook, "_index", counting)
    pid = store.create_portfolio("p", Decimal("1000000"))
    count = 500

    store.execute(
        pid,
        lambda p: [p.open_position(PositionRequest(f"S{i}", 1, "1")) for i in range(count)],
    )

    assert indexed <= 2 * count  # not count * count / 2: no scan per open
    assert len(store.get(pid).positions) == count


def test_reads_in_the_same_unit_of_work_see_positions_fetched_one_by_one(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = holding(store, engine, 5)

    def trade(p: Portfolio) -> tuple[set[str], list[str], bool]:
        p.open_position(PositionRequest("NEW", 1, "10"))
        p.close_position("S0", "4")
        p.open_position(PositionRequest("S0", 2, "5"))  # reopened: a new position
        p.open_position(PositionRequest("NEW", 1, "20"))  # added to the pending one
        return set(p.positions), [c.symbol for c in p.closed_positions], p.money_invariant_holds()

    open_now, closed, invariant = store.execute(pid, trade)

    assert open_now == {"S0", "NEW", "B1", "B2", "B3", "B4"}
    assert closed == ["S0"]
    assert invariant
    snapshot = store.get(pid)
    assert snapshot.positions["NEW"].quantity == 2
    assert snapshot.positions["NEW"].cost_basis == Decimal(30)
    assert snapshot.positions["S0"].quantity == 2
    assert [c.symbol for c in snapshot.closed_positions] == ["S0"]
    assert snapshot.money_invariant_holds()


def test_a_closed_position_is_not_found_again_in_the_same_unit_of_work(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = holding(store, engine, 3)

    def close_twice(p: Portfolio) -> None:
        p.close_position("S0", "1")
        p.close_position("S0", "1")

    with pytest.raises(PositionNotFoundError):
        store.execute(pid, close_twice)
    assert "S0" in store.get(pid).positions


def test_a_rolled_back_savepoint_forgets_the_positions_it_opened(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = holding(store, engine, 3)

    with store.unit_of_work() as uow:
        portfolio = uow.portfolios.get(pid)
        savepoint = uow.session.begin_nested()
        portfolio.open_position(PositionRequest("GONE", 1, "1"))
        uow.session.flush()
        savepoint.rollback()
        assert "GONE" not in portfolio.positions
        portfolio.open_position(PositionRequest("GONE", 1, "2"))
        uow.commit()

    snapshot = store.get(pid)
    assert snapshot.positions["GONE"].cost_basis == Decimal(2)
    assert snapshot.money_invariant_holds()


def test_get_returns_every_open_and_closed_position_detached_in_order(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = holding(store, engine, 4)
    store.execute(pid, lambda p: p.close_position("B2", "3"))
    store.execute(pid, lambda p: p.close_position("B1", "3"))

    with traffic(engine) as seen:
        snapshot = store.get(pid)

    assert seen.rows_returned == 1 + 4  # the portfolio and each of its positions, once
    assert list(snapshot.positions) == ["S0", "B3"]
    assert [p.symbol for p in snapshot.closed_positions] == ["B2", "B1"]
    assert snapshot.money_invariant_holds()
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT cash_balance, version FROM portfolios WHERE id = :id"), {"id": pid}
        ).one()
    assert (snapshot.cash_balance, snapshot.version) == tuple(stored)
