"""Small helpers for integration tests: create and reload portfolios through a UnitOfWork."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, text

from portfolio_core import Portfolio, UnitOfWork


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
