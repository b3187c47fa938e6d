"""Portfolios and positions: the first schema.

Revision ID: pc0001_portfolios
Revises:
Create Date: 2026-11-25 18:17:19.311772
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "pc0001_portfolios"
down_revision: str | None = None
# The library's own branch: an application that includes these scripts in its
# alembic environment upgrades it with `alembic upgrade portfolio_core@head`
# (or `heads`); the "pc" prefix keeps the ids apart from the application's.
branch_labels: str | Sequence[str] | None = ("portfolio_core",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "portfolios",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cash_balance", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column(
            "realized_pnl",
            sa.Numeric(precision=24, scale=8),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("initial_cash", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column(
            "total_deposits",
            sa.Numeric(precision=24, scale=8),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "total_withdrawals",
            sa.Numeric(precision=24, scale=8),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_updated",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "cash_balance >= 0 AND cash_balance <> 'NaN'::numeric",
            name=op.f("ck_portfolios_cash_balance_valid"),
        ),
        sa.CheckConstraint(
            "initial_cash >= 0 AND initial_cash <> 'NaN'::numeric",
            name=op.f("ck_portfolios_initial_cash_valid"),
        ),
        sa.CheckConstraint(
            "realized_pnl <> 'NaN'::numeric", name=op.f("ck_portfolios_realized_pnl_valid")
        ),
        sa.CheckConstraint(
            "total_deposits >= 0 AND total_deposits <> 'NaN'::numeric",
            name=op.f("ck_portfolios_total_deposits_valid"),
        ),
        sa.CheckConstraint(
            "total_withdrawals >= 0 AND total_withdrawals <> 'NaN'::numeric",
            name=op.f("ck_portfolios_total_withdrawals_valid"),
        ),
        sa.CheckConstraint("length(btrim(name)) > 0", name=op.f("ck_portfolios_name_not_blank")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_portfolios_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portfolios")),
    )
    op.create_table(
        "positions",
        sa.Column("portfolio_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("cost_basis", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column("current_price", sa.Numeric(precision=24, scale=8), nullable=False),
        sa.Column(
            "realized_pnl",
            sa.Numeric(precision=24, scale=8),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("exit_price", sa.Numeric(precision=24, scale=8), nullable=True),
        sa.Column(
            "opened_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "cost_basis >= 0 AND cost_basis <> 'NaN'::numeric",
            name=op.f("ck_positions_cost_basis_valid"),
        ),
        sa.CheckConstraint(
            "current_price >= 0 AND current_price <> 'NaN'::numeric",
            name=op.f("ck_positions_current_price_valid"),
        ),
        sa.CheckConstraint(
            "exit_price IS NULL OR (exit_price >= 0 AND exit_price <> 'NaN'::numeric)",
            name=op.f("ck_positions_exit_price_valid"),
        ),
        sa.CheckConstraint(
            "quantity > 0 AND quantity <> 'NaN'::numeric", name=op.f("ck_positions_quantity_valid")
        ),
        sa.CheckConstraint(
            "realized_pnl <> 'NaN'::numeric", name=op.f("ck_positions_realized_pnl_valid")
        ),
        sa.CheckConstraint(
            "symbol ~ '^[A-Z0-9][A-Z0-9.-]{0,19}$'", name=op.f("ck_positions_symbol_format")
        ),
        sa.CheckConstraint(
            "(closed_at IS NULL) = (exit_price IS NULL)",
            name=op.f("ck_positions_closed_has_exit_price"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_positions_version_positive")),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["portfolios.id"],
            name=op.f("fk_positions_portfolio_id_portfolios"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("portfolio_id", "id", name=op.f("pk_positions")),
    )
    op.create_index(
        "uq_positions_open_symbol",
        "positions",
        ["portfolio_id", "symbol"],
        unique=True,
        postgresql_where=sa.text("closed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_positions_open_symbol",
        table_name="positions",
        postgresql_where=sa.text("closed_at IS NULL"),
    )
    op.drop_table("positions")
    op.drop_table("portfolios")
