"""``PortfolioStore.get``'s detached snapshot, built from two plain SELECTs.

Loading thousands of positions through the ORM (identity map, loader
strategies, then expunging every object again) costs several times the query
itself. A snapshot is read-only until someone merges it back, so it is built
straight from the rows: each object is made as the ORM would make it (no
``__init__``), filled with its columns and marked detached with its identity
(``make_transient_to_detached``), so ``update_portfolio`` can merge it later.
The positions come back in the orders the mapped relationships use: open ones
by (opened_at, id), closed ones by (closed_at, id).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import RowMapping, bindparam, select
from sqlalchemy.orm import Session, class_mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position
from portfolio_core.errors import PortfolioNotFoundError
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.schema import portfolios, positions

Mapped = TypeVar("Mapped")

_PORTFOLIO_ROW = select(portfolios).where(portfolios.c.id == bindparam("pid"))
_POSITION_ROWS = (
    select(positions)
    .where(positions.c.portfolio_id == bindparam("pid"))
    .order_by(positions.c.opened_at, positions.c.id)
)


def _attributes(cls: type[Any]) -> list[tuple[str, str]]:
    """(mapped attribute, column name) of each column of ``cls``'s mapping."""
    return [(prop.key, prop.columns[0].key) for prop in class_mapper(cls).column_attrs]


def _detached(cls: type[Mapped], attributes: list[tuple[str, str]], row: RowMapping) -> Mapped:
    instance: Mapped = class_mapper(cls).class_manager.new_instance()
    instance.__dict__.update({key: row[column] for key, column in attributes})
    make_transient_to_detached(instance)
    return instance


def _build_all(rows: Iterable[RowMapping]) -> list[Position]:
    attributes = _attributes(Position)
    return [_detached(Position, attributes, row) for row in rows]


def detached_snapshot(session: Session, portfolio_id: UUID) -> Portfolio:
    """The portfolio with every open and closed position, detached (not in ``session``)."""
    params = {"pid": portfolio_id}
    with translated(entity_type="Portfolio", entity_id=portfolio_id):
        row = session.execute(_PORTFOLIO_ROW, params).mappings().one_or_none()
        if row is None:
            raise PortfolioNotFoundError(portfolio_id)
        position_rows = session.execute(_POSITION_ROWS, params).mappings().all()
    portfolio = _detached(Portfolio, _attributes(Portfolio), row)
    held = _build_all(position_rows)
    closed = sorted((p for p in held if p.closed_at is not None), key=lambda p: (p.closed_at, p.id))
    set_committed_value(portfolio, "_positions", [p for p in held if p.closed_at is None])
    set_committed_value(portfolio, "_closed", closed)
    return portfolio
