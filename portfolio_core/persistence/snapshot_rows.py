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

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session, class_mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position
from portfolio_core.errors import PortfolioNotFoundError
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.schema import portfolios, positions

Mapped = TypeVar("Mapped")


def _attribute_keys(cls: type[Any]) -> tuple[list[str], list[Any]]:
    """The mapped attribute of each column of ``cls``'s mapping, and those columns."""
    props = class_mapper(cls).column_attrs
    return [prop.key for prop in props], [prop.columns[0] for prop in props]


def _detached(new: Callable[[], Mapped], keys: list[str], row: Sequence[Any]) -> Mapped:
    instance = new()
    # Plain tuples zipped with the attribute names: a RowMapping lookup per
    # column cost more than everything else here.
    instance.__dict__.update(zip(keys, row, strict=True))
    make_transient_to_detached(instance)
    return instance


def _statements() -> tuple[Select[Any], Select[Any], list[str], list[str]]:
    portfolio_keys, portfolio_columns = _attribute_keys(Portfolio)
    position_keys, position_columns = _attribute_keys(Position)
    return (
        select(*portfolio_columns).where(portfolios.c.id == bindparam("pid")),
        select(*position_columns)
        .where(positions.c.portfolio_id == bindparam("pid"))
        .order_by(positions.c.opened_at, positions.c.id),
        portfolio_keys,
        position_keys,
    )


_STATEMENTS: list[tuple[Select[Any], Select[Any], list[str], list[str]]] = []


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while thousands of rows and objects are made.

    Each burst of allocations otherwise triggers collections that walk every
    object of the process: measured, they took two thirds of a 10,000-position
    snapshot. Nothing is lost: cycles are collected once it is back on. It is
    turned back on only if it was on (another thread may pause it too).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def detached_snapshot(session: Session, portfolio_id: UUID) -> Portfolio:
    """The portfolio with every open and closed position, detached (not in ``session``)."""
    if not _STATEMENTS:  # built once the classes are mapped
        _STATEMENTS.append(_statements())
    portfolio_row, position_rows, portfolio_keys, position_keys = _STATEMENTS[0]
    params = {"pid": portfolio_id}
    with translated(entity_type="Portfolio", entity_id=portfolio_id):
        row = session.execute(portfolio_row, params).one_or_none()
        if row is None:
            raise PortfolioNotFoundError(portfolio_id)
        rows = session.execute(position_rows, params).all()
    with _collector_paused():  # only while objects are made: never across I/O or the event loop
        portfolio = _detached(
            class_mapper(Portfolio).class_manager.new_instance, portfolio_keys, row
        )
        new_position = class_mapper(Position).class_manager.new_instance
        held = [_detached(new_position, position_keys, position) for position in rows]
    closed = sorted((p for p in held if p.closed_at is not None), key=lambda p: (p.closed_at, p.id))
    set_committed_value(portfolio, "_positions", [p for p in held if p.closed_at is None])
    set_committed_value(portfolio, "_closed", closed)
    return portfolio
