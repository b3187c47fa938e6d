"""Write-path guards: events only at the version their transaction wrote; prior_state.

Revision ID: pc0003_write_path_guards
Revises: 0002
Create Date: 2026-11-30 08:00:00.000000

* ``portfolio_events_at_current_version`` (BEFORE INSERT): an event row is
  admitted only at its portfolio's current version, and only in the
  transaction that wrote that version (the row's xmin is still in
  progress), so a forged event at version 999, or at a version some other
  transaction committed, is refused (SQLSTATE P0001).
* ``idempotency_keys.prior_state``: the portfolio as it stood before a keyed
  ``execute``, so a repeat is compared without replaying the history.

The trigger SQL is written out here rather than imported from the package, so
that this revision keeps doing what it did when later code changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "pc0003_write_path_guards"
down_revision: str | None = "pc0002_audit_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENT_VERSION_FUNCTION = """
CREATE FUNCTION portfolio_events_at_current_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    current_version integer;
    writer xid;
    current_id bigint;
    low bigint;
    writer_id bigint;
    status text;
BEGIN
    SELECT version, xmin INTO current_version, writer
    FROM {portfolios} WHERE id = NEW.portfolio_id;
    IF current_version IS DISTINCT FROM NEW.version THEN
        RAISE EXCEPTION USING
            MESSAGE = format('portfolio_events: version %s of portfolio %s refused: '
                             'the portfolio is at version %s',
                             NEW.version, NEW.portfolio_id, current_version),
            ERRCODE = 'P0001',
            HINT = 'an event is written at the version its transaction gave the portfolio';
    END IF;
    -- The row version we see is uncommitted only if this transaction (or one
    -- of its savepoints) wrote it. Usually its xmin is our own xid; a
    -- savepoint's xid is asked about, widened to 64 bits modulo 2^32.
    current_id := txid_current();
    low := writer::text::bigint;
    IF low <> current_id & 4294967295 THEN
        writer_id := (current_id >> 32 << 32) | low;
        IF low - (current_id & 4294967295) > 2147483648 THEN
            writer_id := writer_id - 4294967296;
        ELSIF (current_id & 4294967295) - low > 2147483648 THEN
            writer_id := writer_id + 4294967296;
        END IF;
        BEGIN
            status := txid_status(writer_id);
        EXCEPTION WHEN invalid_parameter_value THEN  -- "in the future": not ours
            status := NULL;
        END;
        IF status IS DISTINCT FROM 'in progress' THEN
            RAISE EXCEPTION USING
                MESSAGE = format('portfolio_events: version %s of portfolio %s refused: '
                                 'this transaction did not bump the portfolio',
                                 NEW.version, NEW.portfolio_id),
                ERRCODE = 'P0001',
                HINT = 'an event is written in the transaction that bumped the version';
        END IF;
    END IF;
    RETURN NEW;
END
$$
"""


def _portfolios_table() -> str:
    """``portfolios``, schema-qualified under the library's ``schema=`` option.

    A trigger function resolves its unqualified names with the search_path
    of whoever fires it, not the migration's; the option is the connection's
    ``schema_translate_map`` (see ``portfolio_core.persistence.schema_option``).
    """
    context = op.get_context()
    bind = context.connection
    if bind is None or context.as_sql:  # offline (--sql): no connection, no option
        return "portfolios"
    schema = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    if schema is None:
        return "portfolios"
    return f"{bind.dialect.identifier_preparer.quote_schema(schema)}.portfolios"


def upgrade() -> None:
    op.add_column(
        "idempotency_keys",
        sa.Column("prior_state", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.execute(_EVENT_VERSION_FUNCTION.replace("{portfolios}", _portfolios_table()))
    op.execute(
        "CREATE TRIGGER portfolio_events_at_current_version BEFORE INSERT "
        "ON portfolio_events FOR EACH ROW EXECUTE FUNCTION portfolio_events_at_current_version()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER portfolio_events_at_current_version ON portfolio_events")
    op.execute("DROP FUNCTION portfolio_events_at_current_version()")
    op.drop_column("idempotency_keys", "prior_state")
