"""The migration environment: URL from -x url=..., the config, or $PORTFOLIO_CORE_DATABASE_URL.

Migrations run with a lock_timeout and a statement_timeout so that a deploy
step waiting behind a long transaction fails fast instead of queueing every
other query behind its ACCESS EXCLUSIVE lock request.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from portfolio_core.persistence.engine import create_engine, resolve_url
from portfolio_core.persistence.schema import metadata

LOCK_TIMEOUT = "5s"
STATEMENT_TIMEOUT = "120s"

config = context.config
target_metadata = metadata


def _url() -> str:
    given = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    return resolve_url(given or None).render_as_string(hide_password=False)


def _run(connection: Connection) -> None:
    connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
    connection.execute(text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
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
