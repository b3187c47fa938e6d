"""``PortfolioStore.get``'s detached snapshot, built from two plain SELECTs.

Loading thousands of positions through the ORM (identity map, loader
strategies, then expunging every object again) costs several times the query
itself. A snapshot is read-only until someone merges it back, so it is built
straight from the rows: each object is made as the ORM would make it (no
``__init__``: the rows come from our own constrained tables, so they are not
validated again), filled with its columns and given its identity, detached,
so ``update_portfolio`` can merge it later. The positions come back in the
orders the mapped relationships use: open ones by (opened_at, id), closed
ones by (closed_at, id).

Per position only what differs from row to row is fetched and converted:
its ``portfolio_id`` is the portfolio's own, not parsed again 10,000 times,
and its identity is set directly, which is all ``make_transient_to_detached``
does for an object whose every column is loaded (no history, nothing to
expire; ``tests/integration/test_get_many_positions.py`` compares the two).
psycopg2 turns a uuid into a UUID through a Python callback that accepts
every spelling of a UUID; the position ids are fetched as PostgreSQL's one
canonical text form instead and read by :func:`uuid_from_canonical` (asyncpg
decodes them natively, and keeps doing so).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, Final, NamedTuple
from uuid import UUID, SafeUUID

from sqlalchemy import Select, Text, bindparam, cast, select
from sqlalchemy.orm import Mapper, Session, class_mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position
from portfolio_core.errors import PortfolioNotFoundError
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.schema import portfolios, positions

_SHARED: Final = "portfolio_id"
"""The one position column every row of a snapshot has in common: taken from the portfolio."""

_ID_AS_TEXT: Final = frozenset({"psycopg2"})
"""Drivers whose uuid decoding costs more than reading the canonical text here."""


def uuid_from_canonical(text: str) -> UUID:
    """``UUID(text)`` for PostgreSQL's canonical form (``8-4-4-4-12`` hex digits), faster.

    ``UUID.__init__`` first works out which of its many input forms it got;
    this sets the two attributes it would set (as it does, past its frozen
    ``__setattr__``). Only for text PostgreSQL produced: nothing is checked.
    """
    value = object.__new__(UUID)
    object.__setattr__(value, "int", int(text.replace("-", ""), 16))
    object.__setattr__(value, "is_safe", SafeUUID.unknown)
    return value


class _Statements(NamedTuple):
    """The two SELECTs and the mapped attribute each of their columns fills."""

    portfolio: Select[Any]
    positions: Select[Any]
    portfolio_keys: list[str]
    position_keys: list[str]
    id_as_text: bool


def _attribute_keys(mapper: Mapper[Any], skip: str = "") -> tuple[list[str], list[Any]]:
    """The mapped attribute of each column of ``mapper`` (but ``skip``), and those columns."""
    props = [prop for prop in mapper.column_attrs if prop.key != skip]
    return [prop.key for prop in props], [prop.columns[0] for prop in props]


def _statements(id_as_text: bool) -> _Statements:
    portfolio_keys, portfolio_columns = _attribute_keys(class_mapper(Portfolio))
    position_keys, position_columns = _attribute_keys(class_mapper(Position), skip=_SHARED)
    if id_as_text:
        position_columns = [
            cast(column, Text) if column is positions.c.id else column
            for column in position_columns
        ]
    return _Statements(
        select(*portfolio_columns).where(portfolios.c.id == bindparam("pid")),
        select(*position_columns)
        .where(positions.c.portfolio_id == bindparam("pid"))
        .order_by(positions.c.opened_at, positions.c.id),
        portfolio_keys,
        position_keys,
        id_as_text,
    )


_STATEMENTS: dict[str, _Statements] = {}
"""Per driver name, built on first use (once the classes are mapped)."""


def _statements_for(session: Session) -> _Statements:
    driver = session.get_bind().dialect.driver
    found = _STATEMENTS.get(driver)
    if found is None:
        found = _STATEMENTS[driver] = _statements(driver in _ID_AS_TEXT)
    return found


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


def _detached_portfolio(keys: list[str], row: Sequence[Any]) -> Portfolio:
    portfolio: Portfolio = class_mapper(Portfolio).class_manager.new_instance()
    portfolio.__dict__.update(zip(keys, row, strict=True))
    # Its relationships are not in the row: this marks them unloaded until set below.
    make_transient_to_detached(portfolio)
    return portfolio


def _key_of(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function reading the values of ``names`` from an instance dict, as a tuple."""
    get = itemgetter(*names)
    return get if len(names) > 1 else lambda values: (get(values),)


def _detached_positions(
    statements: _Statements, rows: Sequence[Sequence[Any]], portfolio_id: UUID
) -> tuple[list[Position], list[Position]]:
    """One detached Position per row of ``statements.positions``: (open ones, closed ones)."""
    mapper = class_mapper(Position)
    keys = statements.position_keys
    new: Callable[[], Position] = mapper.class_manager.new_instance
    # The primary key's attributes in the mapper's order: (portfolio_id, id); the
    # identity key is (class, that tuple, token), as identity_key_from_primary_key makes it.
    primary_key = _key_of(
        [mapper.get_property_by_column(column).key for column in mapper.primary_key]
    )
    identity_class, _, token = mapper.identity_key_from_primary_key(
        (None,) * len(mapper.primary_key)
    )
    held: tuple[list[Position], list[Position]] = ([], [])
    for row in rows:
        position = new()
        values = position.__dict__
        # Rows zipped with the attribute names: a RowMapping lookup per column
        # cost more than everything else here. Not strict: the statement selects
        # exactly ``keys`` (a strict zip costs a tenth of the whole loop).
        values.update(zip(keys, row, strict=False))
        values[_SHARED] = portfolio_id
        if statements.id_as_text:
            values["id"] = uuid_from_canonical(values["id"])
        instance_state(position).key = (identity_class, primary_key(values), token)
        held[values["closed_at"] is not None].append(position)
    return held


def detached_snapshot(session: Session, portfolio_id: UUID) -> Portfolio:
    """The portfolio with every open and closed position, detached (not in ``session``)."""
    statements = _statements_for(session)
    params = {"pid": portfolio_id}
    with translated(entity_type="Portfolio", entity_id=portfolio_id):
        row = session.execute(statements.portfolio, params).one_or_none()
        if row is None:
            raise PortfolioNotFoundError(portfolio_id)
        rows = session.execute(statements.positions, params).all()
    with _collector_paused():  # only while objects are made: never across I/O or the event loop
        portfolio = _detached_portfolio(statements.portfolio_keys, row)
        held, closed = _detached_positions(statements, rows, portfolio.id)
        del rows  # the collector, back on, has that many fewer objects to scan
    closed.sort(key=lambda p: (p.closed_at, p.id))
    set_committed_value(portfolio, "_positions", held)
    set_committed_value(portfolio, "_closed", closed)
    return portfolio
