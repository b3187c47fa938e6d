"""The bundled alembic scripts: one head, a clean round trip, and no drift from the models
(portfolios, positions, portfolio_events, idempotency_keys)."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from portfolio_core import create_engine, migrate
from portfolio_core.migrations import (
    VERSION_TABLE,
    alembic_config,
    downgrade,
    head_revision,
    upgrade_sql,
)
from portfolio_core.persistence.schema import metadata
from tests.integration.helpers import empty_database, table_names

REPOSITORY = Path(__file__).resolve().parents[2]
APP_TABLES = ("portfolios", "positions", "portfolio_events", "idempotency_keys")
_IN_APP_TABLES = "IN (" + ", ".join(f"'{table}'" for table in APP_TABLES) + ")"

# The schema as PostgreSQL itself describes it, for every application table:
# every constraint (CHECKs with their expressions, keys, foreign keys), every
# index (with its WHERE clause), every column and every trigger.
CONSTRAINTS_SQL = text(
    "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
    "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
    f"WHERE n.nspname = 'public' AND c.conrelid::regclass::text {_IN_APP_TABLES}"
)
INDEXES_SQL = text(
    "SELECT tablename, indexname, indexdef FROM pg_indexes "
    f"WHERE schemaname = 'public' AND tablename {_IN_APP_TABLES}"
)
COLUMNS_SQL = text(
    "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, "
    "character_maximum_length, is_nullable, column_default FROM information_schema.columns "
    f"WHERE table_schema = 'public' AND table_name {_IN_APP_TABLES}"
)
TRIGGERS_SQL = text(
    "SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
    f"WHERE NOT t.tgisinternal AND t.tgrelid::regclass::text {_IN_APP_TABLES}"
)


@pytest.fixture
def empty_url(postgres_server_url: str) -> Iterator[str]:
    """A database with no tables: migrations start from nothing."""
    with empty_database(postgres_server_url) as url:
        yield url


def _describe(url: str) -> dict[str, set[tuple[Any, ...]]]:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            return {
                name: {tuple(row) for row in connection.execute(sql)}
                for name, sql in (
                    ("constraints", CONSTRAINTS_SQL),
                    ("indexes", INDEXES_SQL),
                    ("columns", COLUMNS_SQL),
                    ("triggers", TRIGGERS_SQL),
                )
            }
    finally:
        engine.dispose()


def _current_revision(url: str) -> str | None:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


def test_migrations_have_a_single_head() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("postgresql://localhost/unused"))

    heads = scripts.get_heads()

    assert heads == [head_revision()]
    assert [s.revision for s in scripts.walk_revisions()][-1] == "pc0001_portfolios"


def test_upgrade_downgrade_upgrade_round_trip_on_a_fresh_database(empty_url: str) -> None:
    assert table_names(empty_url) == set()

    migrate(empty_url)
    assert table_names(empty_url) >= set(APP_TABLES)
    assert _current_revision(empty_url) == head_revision()

    downgrade(empty_url, "base")
    assert table_names(empty_url) & set(APP_TABLES) == set()
    assert _current_revision(empty_url) is None

    migrate(empty_url)
    assert table_names(empty_url) >= set(APP_TABLES)
    assert _current_revision(empty_url) == head_revision()


def test_migrating_twice_is_a_no_op(database_url: str) -> None:
    before = _describe(database_url)

    migrate(database_url)

    assert _describe(database_url) == before


def test_autogenerate_finds_no_difference_between_models_and_migrations(
    database_url: str,
) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "version_table": VERSION_TABLE,
                },
            )
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_migrated_schema_matches_create_all_including_checks_and_partial_index(
    database_url: str, empty_url: str
) -> None:
    # autogenerate does not compare CHECK constraints or an index's WHERE
    # clause, so compare the catalogs of the two schemas instead.
    engine = create_engine(empty_url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as connection:
            metadata.create_all(connection)
    finally:
        engine.dispose()

    migrated, modelled = _describe(database_url), _describe(empty_url)

    assert migrated == modelled
    # The comparison covers every application table, not only some.
    for kind in ("constraints", "indexes", "columns"):
        assert {row[0] for row in migrated[kind]} == set(APP_TABLES), kind
    assert {row[0] for row in migrated["triggers"]} == {"portfolio_events"}
    assert {row[1] for row in migrated["triggers"]} == {
        "portfolio_events_no_update_delete",
        "portfolio_events_no_truncate",
        "portfolio_events_at_current_version",
    }
    checks = {name for _table, name, definition in migrated["constraints"] if "CHECK" in definition}
    assert {"ck_portfolios_cash_balance_valid", "ck_positions_quantity_valid"} <= checks
    assert {
        "ck_portfolio_events_operations_is_array",
        "ck_idempotency_keys_key_not_empty",
    } <= checks
    [partial] = [d for _t, name, d in migrated["indexes"] if name == "uq_positions_open_symbol"]
    assert "UNIQUE" in partial
    assert "WHERE (closed_at IS NULL)" in partial
    [keyed] = [d for _t, n, d in migrated["indexes"] if n == "ix_portfolio_events_idempotency_key"]
    assert "WHERE (idempotency_key IS NOT NULL)" in keyed


def test_upgrade_sql_offline_mode_prints_the_ddl() -> None:
    sql = upgrade_sql("postgresql://offline@localhost/none")

    assert "CREATE TABLE portfolios" in sql
    assert "CREATE TABLE positions" in sql
    assert "CREATE TABLE portfolio_events" in sql
    assert "CREATE TABLE idempotency_keys" in sql
    assert "uq_positions_open_symbol" in sql
    assert "<> 'NaN'::numeric" in sql
    assert f"CREATE TABLE {VERSION_TABLE}" in sql
    assert " alembic_version " not in sql


def test_alembic_command_line_config_migrates_with_x_url(empty_url: str) -> None:
    # The same path as `alembic -x url=... upgrade head` from a checkout.
    config = Config(str(REPOSITORY / "alembic.ini"), cmd_opts=Namespace(x=[f"url={empty_url}"]))

    command.upgrade(config, "head")

    assert table_names(empty_url) >= set(APP_TABLES)
    assert _current_revision(empty_url) == head_revision()
