"""``migrate()`` at the start-up of many replicas, and the settings it leaves behind.

The replicas are real processes. To make them really meet, the test holds
the migration's advisory lock itself until PostgreSQL reports every replica
waiting for it (an observable server state, not a sleep), then lets go.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from portfolio_core import create_engine, migrate
from portfolio_core.migration_guard import (
    LOCK_TIMEOUT,
    MIGRATION_LOCK_KEY,
    prepare_migration_transaction,
)
from portfolio_core.migrations import (
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
)
from tests.integration.helpers import empty_database

REPLICAS = 3
MIGRATE = "import sys; from portfolio_core import migrate; migrate(sys.argv[1])"

# Everything the migrations define in the public schema, as PostgreSQL describes it.
CATALOG_SQL = {
    "tables": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
    "constraints": (
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid) "
        "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE n.nspname = 'public'"
    ),
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "triggers": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal",
    "types": (
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public'"
    ),
    "versions": f"SELECT version_num FROM {VERSION_TABLE}",
}
# A bigint advisory key shows in pg_locks as classid (high half), objid (low half), objsubid 1.
WAITING_SQL = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
    "AND objsubid = 1 AND classid::bigint = :high AND objid::bigint = :low "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
SETTINGS = "current_setting('lock_timeout'), current_setting('statement_timeout')"
KEY_HALVES = {
    "high": (MIGRATION_LOCK_KEY >> 32) & 0xFFFFFFFF,
    "low": MIGRATION_LOCK_KEY & 0xFFFFFFFF,
}


@pytest.fixture
def empty_url(postgres_server_url: str) -> Iterator[str]:
    """A database with no tables at all."""
    with empty_database(postgres_server_url) as url:
        yield url


def _catalog(url: str) -> dict[str, set[tuple[Any, ...]]]:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            return {
                name: {tuple(row) for row in connection.execute(text(sql))}
                for name, sql in CATALOG_SQL.items()
            }
    finally:
        engine.dispose()


def _wait_for_waiters(
    connection: Connection, count: int, replicas: list[subprocess.Popen[str]]
) -> None:
    """Return once ``count`` backends wait for the migration lock; fail if a replica exits first."""
    pause = threading.Event()
    while connection.execute(WAITING_SQL, KEY_HALVES).scalar_one() < count:
        connection.rollback()
        exited = [r for r in replicas if r.poll() is not None]
        if exited:
            _out, err = exited[0].communicate()
            raise AssertionError(f"a replica exited before waiting for the lock:\n{err}")
        pause.wait(0.01)


def test_replicas_migrating_an_empty_database_at_once_all_succeed_at_exactly_head(
    empty_url: str, database_url: str
) -> None:
    holder_engine = create_engine(empty_url, pool_size=1, max_overflow=0)
    try:
        with holder_engine.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            holder.commit()
            replicas = [
                subprocess.Popen(
                    [sys.executable, "-c", MIGRATE, empty_url],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(REPLICAS)
            ]
            try:
                _wait_for_waiters(holder, REPLICAS, replicas)
            finally:
                holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                holder.commit()
            outcomes = [replica.communicate(timeout=240) for replica in replicas]
    finally:
        holder_engine.dispose()

    failures = [
        err for replica, (_out, err) in zip(replicas, outcomes, strict=True) if replica.returncode
    ]
    assert failures == []
    assert current_revision(empty_url) == head_revision()
    # database_url was migrated once, alone: the same schema, object for object.
    assert _catalog(empty_url) == _catalog(database_url)


def test_threads_of_one_process_migrating_at_once_all_succeed(empty_url: str) -> None:
    # alembic's env.py context is process-global; migrate() lets one thread in at a time.
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def replica() -> None:
        start.wait()
        try:
            migrate(empty_url)
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert current_revision(empty_url) == head_revision()


def test_migrate_leaves_the_pooled_connection_settings_as_they_were(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    show = text(f"SELECT pg_backend_pid(), {SETTINGS}")
    try:
        with engine.connect() as connection:
            before = connection.execute(show).one()

        migrate(engine)

        with engine.connect() as connection:
            after = connection.execute(show).one()
    finally:
        engine.dispose()

    assert after == before  # the same pooled connection (same backend pid), same settings
    assert before[1:] == ("0", "0")


def test_the_migration_transaction_has_the_timeouts_and_the_lock_until_it_ends(
    database_url: str,
) -> None:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    held = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND objsubid = 1 AND classid::bigint = :high AND objid::bigint = :low"
    )
    try:
        with engine.connect() as connection:
            with connection.begin():
                prepare_migration_transaction(connection, script)
                inside = connection.execute(text(f"SELECT {SETTINGS}")).one()
                with engine.connect() as observer:
                    assert observer.execute(held, KEY_HALVES).scalar_one() == 1
            settings = connection.execute(text(f"SELECT {SETTINGS}")).one()
            connection.rollback()
            with engine.connect() as observer:
                assert observer.execute(held, KEY_HALVES).scalar_one() == 0
    finally:
        engine.dispose()

    assert tuple(inside) == (LOCK_TIMEOUT, "2min")  # STATEMENT_TIMEOUT, as PostgreSQL shows it
    assert tuple(settings) == ("0", "0")
