"""The migration environment: URL from -x url=..., the config, or $PORTFOLIO_CORE_DATABASE_URL.

The library's revisions are recorded in their own version table
(portfolio_core_alembic_version), never in the application's alembic_version.
Online runs go through portfolio_core.migration_guard first: transaction-local
lock and statement timeouts, an advisory lock serializing concurrent
migrators, and the one-time adoption of the old "0001"/"0002" rows.

An application that includes these scripts in its own alembic environment
(version_locations) does not run this file: its env.py and version table apply.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from portfolio_core.migration_guard import VERSION_TABLE, prepare_migration_transaction
from portfolio_core.persistence.engine import create_engine, resolve_url
from portfolio_core.persistence.schema import metadata
from portfolio_core.persistence.schema_option import schema_of

config = context.config
target_metadata = metadata


def _url() -> str:
    given = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    return resolve_url(given or None).render_as_string(hide_password=False)


def _run(connection: Connection) -> None:
    # Opens the transaction every migration runs in (alembic joins it).
    prepare_migration_transaction(connection, context.script)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        # The schema= option (the connection's schema_translate_map): the version table too.
        version_table_schema=schema_of(connection),
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Print the SQL instead of running it."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        version_table=VERSION_TABLE,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a live database (a connection handed over by migrations.py, or our own)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as own:
            _run(own)
            own.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
