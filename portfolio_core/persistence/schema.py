"""Tables, constraints and indexes: the database's own copy of the domain rules.

The CHECK constraints repeat what ``portfolio_core.domain.money`` validates in
Python (finite, non-negative where it must be, never NaN) so that a row
written by any other client is held to the same rules.  Every constraint has a
stable name through the MetaData naming convention, which keeps migrations and
autogenerate comparisons deterministic.

``portfolio_events`` is the audit trail (see ``portfolio_core.persistence.events``):
one row per committed unit of work per portfolio, keyed (portfolio_id, version).
It is append-only in the database itself: a trigger refuses UPDATE, DELETE and
TRUNCATE, whoever asks (table privileges alone do not stop the owner). It has no
foreign key to ``portfolios`` on purpose: the trail outlives what it describes.
``idempotency_keys`` holds each key's request fingerprint and result (see
``portfolio_core.persistence.idempotency``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from sqlalchemy import (
    DDL,
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
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

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


IDEMPOTENCY_KEY_MAX_LENGTH: Final = 200

portfolio_events: Final = Table(
    "portfolio_events",
    metadata,
    Column("portfolio_id", Uuid(as_uuid=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # [{"kind": ..., "arguments": {...}}, ...] with every Decimal as a string.
    Column("operations", JSONB(none_as_null=True), nullable=False),
    Column("idempotency_key", String(IDEMPOTENCY_KEY_MAX_LENGTH), nullable=True),
    PrimaryKeyConstraint("portfolio_id", "version"),
    CheckConstraint("version >= 1", name="version_positive"),
    CheckConstraint("jsonb_typeof(operations) = 'array'", name="operations_is_array"),
)
Index(
    "ix_portfolio_events_idempotency_key",
    portfolio_events.c.idempotency_key,
    postgresql_where=portfolio_events.c.idempotency_key.is_not(None),
)

idempotency_keys: Final = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(IDEMPOTENCY_KEY_MAX_LENGTH), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("portfolio_ids", ARRAY(Uuid(as_uuid=True)), nullable=False),
    Column("result", JSONB(none_as_null=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The portfolio as it stood before an ``execute`` change (``domain.snapshot``):
    # a repeated key is compared against it, whatever the history's length.
    Column("prior_state", JSONB(none_as_null=True), nullable=True),
    PrimaryKeyConstraint("key"),
    CheckConstraint("length(key) > 0", name="key_not_empty"),
)
Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)

APPEND_ONLY_FUNCTION: Final = """
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
"""The trigger function refusing any change to the audit trail (SQLSTATE P0001)."""
APPEND_ONLY_TRIGGERS: Final = (
    "CREATE TRIGGER portfolio_events_no_update_delete BEFORE UPDATE OR DELETE "
    "ON portfolio_events FOR EACH ROW EXECUTE FUNCTION portfolio_events_append_only()",
    "CREATE TRIGGER portfolio_events_no_truncate BEFORE TRUNCATE "
    "ON portfolio_events FOR EACH STATEMENT EXECUTE FUNCTION portfolio_events_append_only()",
)
"""Row triggers (UPDATE, DELETE) and a statement trigger (TRUNCATE) on portfolio_events."""

EVENT_VERSION_FUNCTION: Final = """
CREATE FUNCTION portfolio_events_at_current_version() RETURNS trigger
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
    FROM portfolios WHERE id = NEW.portfolio_id;
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
        FROM portfolio_events WHERE portfolio_id = NEW.portfolio_id;
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
"""The trigger function admitting an event only in the transaction that wrote the portfolio,
at its version or below (a coalesced batch: one event per operation; pc0004)."""
EVENT_VERSION_TRIGGER: Final = (
    "CREATE TRIGGER portfolio_events_at_current_version BEFORE INSERT "
    "ON portfolio_events FOR EACH ROW EXECUTE FUNCTION portfolio_events_at_current_version()"
)

# metadata.create_all() builds the same guarded table the migrations do (in the
# default schema only: with schema= use migrate(), whose pc0003/pc0004 qualify the names).
for _statement in (
    APPEND_ONLY_FUNCTION,
    *APPEND_ONLY_TRIGGERS,
    EVENT_VERSION_FUNCTION,
    EVENT_VERSION_TRIGGER,
):
    # DDL formats its text with %: the function's format() placeholders are escaped.
    event.listen(portfolio_events, "after_create", DDL(_statement.replace("%", "%%")))  # type: ignore[no-untyped-call]
event.listen(
    portfolio_events,
    "after_drop",
    DDL("DROP FUNCTION IF EXISTS portfolio_events_append_only()"),  # type: ignore[no-untyped-call]
)
event.listen(
    portfolio_events,
    "after_drop",
    DDL("DROP FUNCTION IF EXISTS portfolio_events_at_current_version()"),  # type: ignore[no-untyped-call]
)
