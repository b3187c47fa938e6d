"""pc0004's event trigger: below the current version only a contiguous append.

A transaction that bumped a portfolio may write events below the version it
wrote (a coalesced batch: one per operation, ascending) only right after the
newest event; it can neither fill an older gap nor backdate a history for a
portfolio without events (one from before pc0002).
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from uuid import UUID

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from portfolio_core import Portfolio, PortfolioStore
from portfolio_core.concurrency import ConcurrencyService
from tests.integration.coalescing_tools import Call, committed_state, piled_up

EVENT = text(
    "INSERT INTO portfolio_events (portfolio_id, version, operations) "
    "VALUES (:p, :v, CAST(:ops AS jsonb))"
)
FORGED = '[{"kind": "withdraw", "arguments": {"amount": "99"}}]'


def _bump(connection: Connection, pid: UUID, version: int) -> None:
    connection.execute(
        text("UPDATE portfolios SET version = :v WHERE id = :p"), {"p": pid, "v": version}
    )


def _versions(engine: Engine, pid: UUID) -> list[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT version FROM portfolio_events WHERE portfolio_id = :p ORDER BY version"),
            {"p": pid},
        )
        return list(rows.scalars())


def _legacy_portfolio(store: PortfolioStore, engine: Engine) -> UUID:
    """A portfolio row as pc0001 left it: no events, at version 5."""
    source = store.create_portfolio("legacy", Decimal("100"))
    with engine.begin() as connection:
        row = (
            connection.execute(text("SELECT * FROM portfolios WHERE id = :p"), {"p": source})
            .mappings()
            .one()
        )
        columns = ", ".join(k for k in row if k != "id")
        legacy = connection.execute(
            text(
                f"INSERT INTO portfolios (id, {columns}) SELECT gen_random_uuid(), {columns} "
                "FROM portfolios WHERE id = :p RETURNING id"
            ),
            {"p": source},
        ).scalar_one()
        _bump(connection, legacy, 5)
    return UUID(str(legacy))


def test_a_gap_below_the_newest_event_can_not_be_filled(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))  # v1 and its event
    with engine.begin() as connection:  # v1 -> v3, an event at v3 only (pc0003 admits it)
        _bump(connection, pid, 3)
        connection.execute(EVENT, {"p": pid, "v": 3, "ops": "[]"})

    with engine.connect() as connection, connection.begin():
        _bump(connection, pid, 4)
        connection.execute(EVENT, {"p": pid, "v": 4, "ops": "[]"})
        with pytest.raises(DBAPIError, match="newest event"):
            connection.execute(EVENT, {"p": pid, "v": 2, "ops": FORGED})

    assert _versions(engine, pid) == [1, 3]


def test_a_portfolio_without_events_gets_no_backdated_history(
    store: PortfolioStore, engine: Engine
) -> None:
    legacy = _legacy_portfolio(store, engine)
    forged = '[{"kind": "created", "arguments": {"name": "x", "cash_balance": "1000000"}}]'

    with engine.connect() as connection, connection.begin():
        _bump(connection, legacy, 6)
        connection.execute(EVENT, {"p": legacy, "v": 6, "ops": "[]"})
        with pytest.raises(DBAPIError, match="newest event"):
            connection.execute(EVENT, {"p": legacy, "v": 1, "ops": forged})

    assert _versions(engine, legacy) == []


def test_one_multi_row_insert_appends_ascending_events_up_to_the_version_written(
    store: PortfolioStore, engine: Engine
) -> None:
    # A row trigger sees the rows its own statement inserted before: v2, v3, v4 in one INSERT.
    pid = store.create_portfolio("alpha", Decimal("100"))
    with engine.begin() as connection:
        _bump(connection, pid, 4)
        connection.execute(
            text(
                "INSERT INTO portfolio_events (portfolio_id, version, operations) VALUES "
                "(:p, 2, '[]'::jsonb), (:p, 3, '[]'::jsonb), (:p, 4, '[]'::jsonb)"
            ),
            {"p": pid},
        )
    assert _versions(engine, pid) == [1, 2, 3, 4]

    descending = text(  # v6 before v5 is not a contiguous append
        "INSERT INTO portfolio_events (portfolio_id, version, operations) VALUES "
        "(:p, 6, '[]'::jsonb), (:p, 5, '[]'::jsonb), (:p, 7, '[]'::jsonb)"
    )
    with engine.connect() as connection, connection.begin():
        _bump(connection, pid, 7)
        with pytest.raises(DBAPIError, match="newest event"):
            connection.execute(descending, {"p": pid})
    assert _versions(engine, pid) == [1, 2, 3, 4]


def test_a_coalesced_batch_on_a_portfolio_without_events_writes_them_one_by_one(
    store: PortfolioStore, engine: Engine, service: ConcurrencyService
) -> None:
    # The fast way's events (v6, v7 below v8) continue no event: refused, so the
    # batch runs again one change per operation, each event at its own version.
    legacy = _legacy_portfolio(store, engine)
    coalescing = PortfolioStore(engine, service, coalesce=True)

    def deposit(portfolio: Portfolio) -> None:
        portfolio.deposit(Decimal("1"))

    calls: list[Call] = [partial(coalescing.execute, legacy, deposit) for _ in range(3)]
    outcomes = piled_up(coalescing, engine, legacy, calls)

    assert [o.error for o in outcomes] == [None, None, None]
    assert committed_state(engine, legacy) == (8, Decimal("103"), 3)
    assert _versions(engine, legacy) == [6, 7, 8]
