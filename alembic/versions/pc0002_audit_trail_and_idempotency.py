"""Audit trail (append-only portfolio_events) and idempotency keys.

Revision ID: pc0002_audit_idempotency
Revises: pc0001_portfolios
Create Date: 2026-11-25 18:40:00.000000

The trigger SQL is written out here rather than imported from the package, so
that this revision keeps doing what it did when later code changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "pc0002_audit_idempotency"
down_revision: str | None = "pc0001_portfolios"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY_FUNCTION = """
CREATE FUNCTION portfolio_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'portfolio_events is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'P0001',
        HINT = 'the audit trail can only grow; write a new event instead';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "portfolio_events",
        sa.Column("portfolio_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("operations", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "jsonb_typeof(operations) = 'array'",
            name=op.f("ck_portfolio_events_operations_is_array"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_portfolio_events_version_positive")),
        sa.PrimaryKeyConstraint("portfolio_id", "version", name=op.f("pk_portfolio_events")),
    )
    op.create_index(
        "ix_portfolio_events_idempotency_key",
        "portfolio_events",
        ["idempotency_key"],
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("portfolio_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("length(key) > 0", name=op.f("ck_idempotency_keys_key_not_empty")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.execute(_APPEND_ONLY_FUNCTION)
    op.execute(
        "CREATE TRIGGER portfolio_events_no_update_delete BEFORE UPDATE OR DELETE "
        "ON portfolio_events FOR EACH ROW EXECUTE FUNCTION portfolio_events_append_only()"
    )
    op.execute(
        "CREATE TRIGGER portfolio_events_no_truncate BEFORE TRUNCATE "
        "ON portfolio_events FOR EACH STATEMENT EXECUTE FUNCTION portfolio_events_append_only()"
    )


def downgrade() -> None:
    # Dropping the table drops its triggers; the function goes after it.
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index(
        "ix_portfolio_events_idempotency_key",
        table_name="portfolio_events",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_table("portfolio_events")
    op.execute("DROP FUNCTION portfolio_events_append_only()")
