"""Coalesced batches: an event may be written below the version its transaction wrote.

Revision ID: pc0004_coalesced_events
Revises: pc0003_write_path_guards

``portfolio_events_at_current_version`` now also admits an event below the
portfolio's current version when it continues the newest event (the newest
is at NEW.version - 1), still only in the transaction that wrote the
portfolio's row (its xmin is still in progress). A coalesced batch
(``portfolio_core.coalescing``) bumps the version once per operation and
writes one event per operation at consecutive versions, ascending, with one
UPDATE and one multi-row INSERT (a row trigger sees the rows its statement
inserted before). No gap below the newest event can be filled, and a
portfolio without events (from before pc0002) gets none backdated; an event
above the current version, or in a transaction that did not write the row,
is refused as before.

The trigger SQL is written out here rather than imported from the package, so
that this revision keeps doing what it did when later code changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "pc0004_coalesced_events"
down_revision: str | None = "pc0003_write_path_guards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENT_VERSION_FUNCTION = """
CREATE OR REPLACE FUNCTION portfolio_events_at_current_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    current_version integer;
    writer xid;
    current_id bigint;
    low bigint;
    writer_id bigint;
    status text;
    newest integer;
BEGIN
    SELECT version, xmin INTO current_version, writer
    FROM {portfolios} WHERE id = NEW.portfolio_id;
    -- At the version this transaction gave the portfolio, or below it as a
    -- contiguous append (checked last, below).
    IF current_version IS NULL OR NEW.version > current_version OR NEW.version < 1 THEN
        RAISE EXCEPTION USING
            MESSAGE = format('portfolio_events: version %s of portfolio %s refused: '
                             'the portfolio is at version %s',
                             NEW.version, NEW.portfolio_id, current_version),
            ERRCODE = 'P0001',
            HINT = 'an event is written at a version its transaction gave the portfolio';
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
    -- Below the current version: a coalesced batch writes one event per
    -- operation at consecutive versions up to the one written, ascending (a
    -- row trigger sees the rows its statement inserted before). The newest
    -- event must be at NEW.version - 1: no gap filled, nothing backdated.
    IF NEW.version < current_version THEN
        SELECT max(version) INTO newest
        FROM {events} WHERE portfolio_id = NEW.portfolio_id;
        IF newest IS DISTINCT FROM NEW.version - 1 THEN
            RAISE EXCEPTION USING
                MESSAGE = format('portfolio_events: version %s of portfolio %s refused: '
                                 'its newest event is at version %s',
                                 NEW.version, NEW.portfolio_id, newest),
                ERRCODE = 'P0001',
                HINT = 'an event below the current version continues the newest one';
        END IF;
    END IF;
    RETURN NEW;
END
$$
"""

_PC0003_EVENT_VERSION_FUNCTION = """
CREATE OR REPLACE FUNCTION portfolio_events_at_current_version() RETURNS trigger
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


def _table(name: str) -> str:
    """``name``, schema-qualified under the library's ``schema=`` option (as pc0003)."""
    context = op.get_context()
    bind = context.connection
    if bind is None or context.as_sql:  # offline (--sql): no connection, no option
        return name
    schema = (bind.get_execution_options().get("schema_translate_map") or {}).get(None)
    if schema is None:
        return name
    return f"{bind.dialect.identifier_preparer.quote_schema(schema)}.{name}"


def _portfolios_table() -> str:
    return _table("portfolios")


def upgrade() -> None:
    function = _EVENT_VERSION_FUNCTION.replace("{portfolios}", _portfolios_table())
    op.execute(function.replace("{events}", _table("portfolio_events")))


def downgrade() -> None:
    op.execute(_PC0003_EVENT_VERSION_FUNCTION.replace("{portfolios}", _portfolios_table()))
