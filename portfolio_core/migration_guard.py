"""What a migration transaction does before alembic reads the version table.

Four things, all in the migration's own transaction (env.py calls
:func:`prepare_migration_transaction` first thing, on every online run):

* ``SET LOCAL`` timeouts, so a migration waiting behind a long transaction
  fails fast instead of queueing every query behind its ACCESS EXCLUSIVE
  request; being LOCAL, they end with the transaction and never stay on a
  pooled connection.
* A transaction-level advisory lock, so N replicas that migrate at start-up
  run one after the other: the first migrates, the others then find the
  version table at head and do nothing. PostgreSQL releases the lock at
  COMMIT or ROLLBACK, also when a process dies.
* Adoption of the version rows written by earlier releases, which kept
  the library's revisions ``"0001"``/``"0002"`` in the default
  ``alembic_version`` table (see :func:`adopt_legacy_version_rows`).
* With the ``schema=`` option (``persistence.schema_option``): the schema
  created if missing, and made the transaction's only ``search_path``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, bindparam, text

from portfolio_core.persistence.locking import advisory_key
from portfolio_core.persistence.schema_option import quoted_schema, schema_of

__all__ = [
    "ADVISORY_LOCK_WAIT",
    "LEGACY_REVISIONS",
    "LOCK_TIMEOUT",
    "MIGRATION_LOCK_KEY",
    "STATEMENT_TIMEOUT",
    "VERSION_TABLE",
    "LegacyRevision",
    "adopt_legacy_version_rows",
    "prepare_migration_transaction",
]

_log = logging.getLogger(__name__)

VERSION_TABLE: Final = "portfolio_core_alembic_version"
"""The library's own alembic version table; ``alembic_version`` stays the application's."""

MIGRATION_LOCK_KEY: Final = advisory_key("portfolio_core", "migrations")
"""The advisory-lock key every migration of the library's schema holds until it commits."""

LOCK_TIMEOUT: Final = "5s"
"""How long one DDL statement may wait for a table lock."""

STATEMENT_TIMEOUT: Final = "120s"
"""How long one migration statement may run."""

ADVISORY_LOCK_WAIT: Final = "10min"
"""How long a replica waits for another replica's migration before giving up."""


@dataclass(frozen=True)
class LegacyRevision:
    """A revision id of the old scheme, its new id, and the tables it implies."""

    old: str
    new: str
    tables: tuple[str, ...]


LEGACY_REVISIONS: Final = (
    LegacyRevision("0001", "pc0001_portfolios", ("portfolios", "positions")),
    LegacyRevision(
        "0002",
        "pc0002_audit_idempotency",
        ("portfolios", "positions", "portfolio_events", "idempotency_keys"),
    ),
)
"""Oldest first: the library's revisions as earlier releases recorded them."""

_EXISTS = text("SELECT to_regclass(:name) IS NOT NULL")


def _exists(connection: Connection, name: str) -> bool:
    return bool(connection.execute(_EXISTS, {"name": name}).scalar_one())


def prepare_migration_transaction(connection: Connection, script: ScriptDirectory) -> None:
    """Bound, serialize and (once) adopt old version rows, in ``connection``'s transaction.

    Takes the advisory lock before the DDL timeouts apply, so a replica may
    wait up to :data:`ADVISORY_LOCK_WAIT` for another one's migration, while
    each DDL statement then waits at most :data:`LOCK_TIMEOUT` for a table
    lock and runs at most :data:`STATEMENT_TIMEOUT`.
    """
    # Both bounds, whatever the pool's defaults: a short statement_timeout set
    # on the application's connections must not cut a replica's wait.
    connection.execute(text(f"SET LOCAL lock_timeout = '{ADVISORY_LOCK_WAIT}'"))
    connection.execute(text(f"SET LOCAL statement_timeout = '{ADVISORY_LOCK_WAIT}'"))
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    connection.execute(text(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"))
    schema = schema_of(connection)
    if schema is not None:
        # Under the lock: two replicas' CREATE SCHEMA IF NOT EXISTS could collide.
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted_schema(schema)}"))
        # For this transaction only (SET LOCAL, safe behind a transaction pooler):
        # alembic's ADD COLUMN and the scripts' trigger DDL name tables unqualified.
        connection.execute(text(f"SET LOCAL search_path TO {quoted_schema(schema)}"))
    adopt_legacy_version_rows(connection, script)


def adopt_legacy_version_rows(connection: Connection, script: ScriptDirectory) -> str | None:
    """Move the library's old revision from ``alembic_version`` to :data:`VERSION_TABLE`.

    Acts only when all of these hold, else touches nothing and returns None:
    the library's version table is absent or empty; ``alembic_version`` holds
    ``"0001"`` or ``"0002"``; and every table that revision created exists (a
    user's own ``"0001"`` with no ``portfolios`` table is not ours). Then the
    library's table is stamped with the new id, and the old row is deleted
    from ``alembic_version`` only if that table held nothing else (the empty
    table is left in place: to alembic an empty table means "base"). If it
    held other rows too, it is left exactly as it was, with a warning: an
    application that ran the old scripts inside its own environment must
    rename the row itself (see the README). Returns the new id stamped.
    """
    if (
        _exists(connection, VERSION_TABLE)
        and connection.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar_one()
    ):
        return None
    if not _exists(connection, "alembic_version"):
        return None
    rows = set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    ours = [
        legacy
        for legacy in LEGACY_REVISIONS
        if legacy.old in rows and all(_exists(connection, t) for t in legacy.tables)
    ]
    if not ours:
        return None
    newest = ours[-1]
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    context.stamp(script, newest.new)
    old_ids = {legacy.old for legacy in ours}
    if rows == old_ids:
        connection.execute(
            text("DELETE FROM alembic_version WHERE version_num IN :old").bindparams(
                bindparam("old", expanding=True)
            ),
            {"old": sorted(old_ids)},
        )
        _log.warning(
            "moved portfolio_core revision %s from alembic_version to %s as %s",
            newest.old,
            VERSION_TABLE,
            newest.new,
        )
    else:
        _log.warning(
            "alembic_version holds %s besides portfolio_core's old revision %s: left as it "
            "was; %s now records %s",
            sorted(rows - old_ids),
            newest.old,
            VERSION_TABLE,
            newest.new,
        )
    return newest.new
