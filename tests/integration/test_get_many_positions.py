"""``get`` of a portfolio holding thousands of positions (issue 13, item 4).

The snapshot is built straight from rows (``persistence.snapshot_rows``), not
through the ORM's loading: what it returns must still be exactly what is
stored, with exact Decimals, in the relationships' orders, and made of objects
in the state SQLAlchemy's own ``make_transient_to_detached`` would give them
(so a snapshot changed offline merges back as before). Speed is the bench's
business (scaling rows (d)); nothing here is timed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import class_mapper, make_transient_to_detached

from portfolio_core import AsyncPortfolioStore, Portfolio, PortfolioStore, Position, UnitOfWork

MANY = 2_000

# Money with all 8 decimals and up to 16 integer digits (NUMERIC(24, 8)), different
# on every row; every tenth position closed, some at the same instant (then by id).
_INSERT = text(
    "INSERT INTO positions (portfolio_id, id, symbol, quantity, cost_basis, current_price, "
    "realized_pnl, exit_price, opened_at, closed_at, version) "
    "SELECT :pid, gen_random_uuid(), 'S' || g, "
    "g * 4567890123.00000001 + g * 0.00000007, g * 0.00000001, 9999999999999999.99999999 - g, "
    "CASE WHEN g % 10 = 0 THEN -g * 1.5 ELSE 0 END, "
    "CASE WHEN g % 10 = 0 THEN g * 0.25 END, "
    "now() - g * interval '1 millisecond', "
    "CASE WHEN g % 10 = 0 THEN now() - (g % 7) * interval '1 second' END, "
    "1 + g % 3 "
    "FROM generate_series(1, :many) AS g"
)
_STORED = text(
    "SELECT id, portfolio_id, symbol, quantity, cost_basis, current_price, realized_pnl, "
    "exit_price, opened_at, closed_at, version FROM positions WHERE portfolio_id = :pid"
)
_MONEY = ("quantity", "cost_basis", "current_price", "realized_pnl", "exit_price")


def holding_many(store: PortfolioStore, engine: Engine) -> UUID:
    """A portfolio and MANY positions inserted by one statement."""
    pid = store.create_portfolio("many", Decimal("1000"))
    with engine.begin() as connection:
        connection.execute(_INSERT, {"pid": pid, "many": MANY})
    return pid


def stored_rows(engine: Engine, pid: UUID) -> dict[UUID, dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(_STORED, {"pid": pid}).mappings().all()
    return {row["id"]: dict(row) for row in rows}


def as_row(position: Position) -> dict[str, Any]:
    names = ("id", "portfolio_id", "symbol", *_MONEY, "opened_at", "closed_at", "version")
    return {name: getattr(position, name) for name in names}


def exact(value: object) -> object:
    """A Decimal's sign, digits and exponent (``==`` ignores trailing zeros); else the value."""
    return value.as_tuple() if isinstance(value, Decimal) else value


def assert_same_as_stored(snapshot: Portfolio, stored: dict[UUID, dict[str, Any]]) -> None:
    held = [*snapshot.positions.values(), *snapshot.closed_positions]
    assert len(held) == len(stored) == MANY
    for position in held:
        assert type(position) is Position
        assert isinstance(position.id, UUID)
        row = stored[position.id]
        assert as_row(position) == row
        assert {name: exact(getattr(position, name)) for name in _MONEY} == {
            name: exact(row[name]) for name in _MONEY
        }


def test_get_returns_every_position_exactly_as_stored_in_the_relationships_orders(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = holding_many(store, engine)
    stored = stored_rows(engine, pid)

    snapshot = store.get(pid)

    assert_same_as_stored(snapshot, stored)
    opened = sorted(
        (r for r in stored.values() if r["closed_at"] is None),
        key=lambda r: (r["opened_at"], r["id"]),
    )
    closed = sorted(
        (r for r in stored.values() if r["closed_at"] is not None),
        key=lambda r: (r["closed_at"], r["id"]),
    )
    assert list(snapshot.positions) == [r["symbol"] for r in opened]
    assert [p.symbol for p in snapshot.closed_positions] == [r["symbol"] for r in closed]
    assert len(closed) == MANY // 10
    assert {p.portfolio_id for p in snapshot.closed_positions} == {pid}


@pytest.mark.asyncio
async def test_the_async_get_returns_the_same_positions(
    store: PortfolioStore, engine: Engine, async_engine: AsyncEngine
) -> None:
    pid = holding_many(store, engine)

    snapshot = await AsyncPortfolioStore(async_engine).get(pid)

    assert_same_as_stored(snapshot, stored_rows(engine, pid))
    assert [as_row(p) for p in snapshot.positions.values()] == [
        as_row(p) for p in store.get(pid).positions.values()
    ]


def test_each_position_is_in_the_state_make_transient_to_detached_gives(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = holding_many(store, engine)
    snapshot = store.get(pid)

    for position in [*list(snapshot.positions.values())[:50], *snapshot.closed_positions[:50]]:
        reference = class_mapper(Position).class_manager.new_instance()
        reference.__dict__.update(
            (key, value) for key, value in position.__dict__.items() if key != "_sa_instance_state"
        )
        make_transient_to_detached(reference)
        made, expected = inspect(position), inspect(reference)
        assert made.key == expected.key
        assert made.detached
        assert made.has_identity
        assert made.session_id is None
        assert made.committed_state == expected.committed_state == {}
        assert made.expired_attributes == expected.expired_attributes == set()
        assert made.unloaded == expected.unloaded == set()
        assert made.modified is expected.modified is False


def test_a_snapshot_of_many_positions_changed_offline_merges_back(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = holding_many(store, engine)
    snapshot = store.get(pid)
    snapshot.update_position_price("S7", "12.34567891")
    snapshot.deposit("0.00000001")

    with UnitOfWork(engine) as uow:
        uow.portfolios.update_portfolio(snapshot)
        uow.commit()

    stored = stored_rows(engine, pid)
    assert exact(next(r for r in stored.values() if r["symbol"] == "S7")["current_price"]) == (
        exact(Decimal("12.34567891"))
    )
    after = store.get(pid)
    assert after.version == snapshot.version + 1
    assert after.cash_balance == Decimal("1000.00000001")
    assert_same_as_stored(after, stored)
