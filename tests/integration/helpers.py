"""Small helpers for integration tests: create and reload portfolios through a UnitOfWork."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from portfolio_core import Portfolio, UnitOfWork, create_engine


def create_portfolio(engine: Engine, cash: Decimal | int | str = 10_000, name: str = "p") -> UUID:
    """Commit a new portfolio (version 1) and return its id."""
    portfolio = Portfolio(name, cash)
    with UnitOfWork(engine) as uow:
        uow.portfolios.add(portfolio)
        uow.commit()
    return portfolio.id


def reload(engine: Engine, portfolio_id: UUID) -> Portfolio:
    """A detached copy of the committed portfolio, open and closed positions loaded."""
    with UnitOfWork(engine) as uow:
        snapshot = uow.portfolios.get_snapshot(portfolio_id)
        # Detach before the unit of work rolls back, which would expire every attribute.
        uow.session.expunge_all()
    return snapshot


def stored_version(engine: Engine, portfolio_id: UUID) -> int:
    """The version column as committed, read with plain SQL."""
    with engine.connect() as connection:
        version: Any = connection.execute(
            text("SELECT version FROM portfolios WHERE id = :id"), {"id": portfolio_id}
        ).scalar_one()
    return int(version)


@contextmanager
def empty_database(server_url: str) -> Iterator[str]:
    """A brand-new database with no tables at all (not copied from the migrated template)."""
    name = f"pc_empty_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def table_names(url: str) -> set[str]:
    """The tables of the public schema."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
