"""Imperative mapping of the domain classes onto the tables: start_mappers and the registry.

Both tables carry SQLAlchemy's native ``version_id_col``: every UPDATE says
``WHERE version = <loaded version>`` and a row count of 0 raises
StaleDataError, which PortfolioSession turns into StaleDataException.

SQLAlchemy versions each row on its own.  The Portfolio is the aggregate root,
so a change to any of its positions must also make concurrent writers of the
portfolio fail: the portfolio's counter is not generated
(``version_id_generator=False``) but set by PortfolioSession's ``before_flush``
hook (``persistence.session``), once per transaction.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Column, Table, and_
from sqlalchemy.orm import foreign, registry, relationship

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position
from portfolio_core.persistence.position_source import install_position_source
from portfolio_core.persistence.schema import metadata, portfolios, positions

mapper_registry: Final = registry(metadata=metadata)

PORTFOLIO_FIELDS: Final = (
    "cash_balance",
    "realized_pnl",
    "initial_cash",
    "total_deposits",
    "total_withdrawals",
)
POSITION_FIELDS: Final = ("quantity", "cost_basis", "current_price", "realized_pnl", "exit_price")
"""Columns mapped onto private attributes: the domain exposes them read-only."""


def _private(table: Table, names: tuple[str, ...]) -> dict[str, Column[Any]]:
    return {f"_{name}": table.c[name] for name in names}


def start_mappers() -> None:
    """Map Portfolio and Position onto their tables (idempotent)."""
    if getattr(Portfolio, "__mapper__", None) is not None:
        return
    mapper_registry.map_imperatively(
        Position,
        positions,
        properties={
            "_version": positions.c.version,
            **_private(positions, POSITION_FIELDS),
        },
        version_id_col=positions.c.version,
    )
    mapper_registry.map_imperatively(
        Portfolio,
        portfolios,
        properties={
            "_version": portfolios.c.version,
            **_private(portfolios, PORTFOLIO_FIELDS),
            # Open positions only: closed ones stay in the collection for the
            # rest of the session (the domain filters them) and are never
            # removed from it, so SQLAlchemy never tries to orphan a row.
            # Loaded only when read whole: a command on one symbol fetches
            # that row alone (persistence.position_source).
            "_positions": relationship(
                Position,
                primaryjoin=and_(
                    portfolios.c.id == foreign(positions.c.portfolio_id),
                    positions.c.closed_at.is_(None),
                ),
                cascade="save-update, merge",
                order_by=(positions.c.opened_at, positions.c.id),
                lazy="select",
            ),
            "_closed": relationship(
                Position,
                primaryjoin=and_(
                    portfolios.c.id == foreign(positions.c.portfolio_id),
                    positions.c.closed_at.is_not(None),
                ),
                viewonly=True,
                order_by=(positions.c.closed_at, positions.c.id),
                lazy="select",
            ),
        },
        version_id_col=portfolios.c.version,
        version_id_generator=False,
    )
    # Commands on one symbol fetch that position alone (persistence.position_source).
    install_position_source()
