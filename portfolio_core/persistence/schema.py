"""Tables, constraints and indexes: the database's own copy of the domain rules.

The CHECK constraints repeat what ``portfolio_core.domain.money`` validates in
Python (finite, non-negative where it must be, never NaN) so that a row
written by any other client is held to the same rules.  Every constraint has a
stable name through the MetaData naming convention, which keeps migrations and
autogenerate comparisons deterministic.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
    func,
    text,
)

from portfolio_core.domain.money import NAME_MAX_LENGTH, PRECISION, SCALE, SYMBOL_MAX_LENGTH

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def Money() -> Numeric[Decimal]:  # noqa: N802 - reads as a type in the table definitions
    """NUMERIC(24, 8) returned as Decimal (never float)."""
    return Numeric(PRECISION, SCALE, asdecimal=True)


def _finite(column: str) -> str:
    # NUMERIC(p, s) can hold NaN (but not Infinity): refuse it explicitly.
    return f"{column} <> 'NaN'::numeric"


def _non_negative(column: str) -> str:
    return f"{column} >= 0 AND {_finite(column)}"


portfolios: Final = Table(
    "portfolios",
    metadata,
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("name", String(NAME_MAX_LENGTH), nullable=False),
    Column("cash_balance", Money(), nullable=False),
    Column("realized_pnl", Money(), nullable=False, server_default=text("0")),
    Column("initial_cash", Money(), nullable=False),
    Column("total_deposits", Money(), nullable=False, server_default=text("0")),
    Column("total_withdrawals", Money(), nullable=False, server_default=text("0")),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_updated", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("id"),
    CheckConstraint("length(btrim(name)) > 0", name="name_not_blank"),
    CheckConstraint(_non_negative("cash_balance"), name="cash_balance_valid"),
    CheckConstraint(_finite("realized_pnl"), name="realized_pnl_valid"),
    CheckConstraint(_non_negative("initial_cash"), name="initial_cash_valid"),
    CheckConstraint(_non_negative("total_deposits"), name="total_deposits_valid"),
    CheckConstraint(_non_negative("total_withdrawals"), name="total_withdrawals_valid"),
    CheckConstraint("version >= 1", name="version_positive"),
)

positions: Final = Table(
    "positions",
    metadata,
    # portfolio_id leads the key: every child row lives with its portfolio,
    # which is what a distribution column (Citus) or a shard key needs.
    Column("portfolio_id", Uuid(as_uuid=True), nullable=False),
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("symbol", String(SYMBOL_MAX_LENGTH), nullable=False),
    Column("quantity", Money(), nullable=False),
    Column("cost_basis", Money(), nullable=False),
    Column("current_price", Money(), nullable=False),
    Column("realized_pnl", Money(), nullable=False, server_default=text("0")),
    Column("exit_price", Money(), nullable=True),
    Column("opened_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("portfolio_id", "id"),
    ForeignKeyConstraint(["portfolio_id"], ["portfolios.id"], ondelete="CASCADE"),
    CheckConstraint("symbol ~ '^[A-Z0-9][A-Z0-9.-]{0,19}$'", name="symbol_format"),
    CheckConstraint(f"quantity > 0 AND {_finite('quantity')}", name="quantity_valid"),
    CheckConstraint(_non_negative("cost_basis"), name="cost_basis_valid"),
    CheckConstraint(_non_negative("current_price"), name="current_price_valid"),
    CheckConstraint(_finite("realized_pnl"), name="realized_pnl_valid"),
    CheckConstraint(
        f"exit_price IS NULL OR ({_non_negative('exit_price')})", name="exit_price_valid"
    ),
    CheckConstraint("(closed_at IS NULL) = (exit_price IS NULL)", name="closed_has_exit_price"),
    CheckConstraint("version >= 1", name="version_positive"),
)

Index(
    "uq_positions_open_symbol",
    positions.c.portfolio_id,
    positions.c.symbol,
    unique=True,
    postgresql_where=positions.c.closed_at.is_(None),
)
