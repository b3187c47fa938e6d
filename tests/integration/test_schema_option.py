"""The ``schema=`` option: the library's tables in a PostgreSQL schema of their own.

Migrating into a schema next to an application's own ``positions`` table,
sync and async stores on it, two schemas of one database kept apart, a bad
name refused before any SQL, a second migrate doing nothing. The contract
suite's representative cases run in a schema in test_contract_in_schema.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, inspect, text

from portfolio_core import (
    AsyncPortfolioStore,
    Portfolio,
    PortfolioStore,
    PositionRequest,
    StaleDataException,
    UnitOfWork,
    ValidationError,
    create_async_engine,
    create_engine,
    migrate,
)
from portfolio_core.cli import main
from portfolio_core.migrations import VERSION_TABLE, current_revision, head_revision
from tests.integration.helpers import empty_database

LIBRARY_TABLES = {"portfolios", "positions", "portfolio_events", "idempotency_keys", VERSION_TABLE}
TRIGGER_FUNCTIONS = {"portfolio_events_append_only", "portfolio_events_at_current_version"}
SCHEMA = "portfolio_core"


@pytest.fixture
def app_database(postgres_server_url: str) -> Iterator[str]:
    """A database holding only the application's own ``public.positions`` (one row)."""
    with empty_database(postgres_server_url) as url:
        app = create_engine(url, pool_size=1, max_overflow=0)
        try:
            with app.begin() as connection:
                connection.execute(
                    text("CREATE TABLE positions (id serial PRIMARY KEY, note text NOT NULL)")
                )
                connection.execute(text("INSERT INTO positions (note) VALUES ('the app''s own')"))
        finally:
            app.dispose()
        yield url


def _tables(engine: Engine, schema: str) -> set[str]:
    with engine.connect() as connection:
        return set(inspect(connection).get_table_names(schema=schema))


def _functions(engine: Engine, schema: str) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = :schema"
            ),
            {"schema": schema},
        )
        return set(rows.scalars())


def _app_rows(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT note FROM public.positions")).scalars())


def test_migrate_puts_everything_in_the_schema_next_to_the_apps_positions_table(
    app_database: str,
) -> None:
    engine = create_engine(app_database, schema=SCHEMA)
    try:
        migrate(engine)

        assert _tables(engine, SCHEMA) == LIBRARY_TABLES
        assert _functions(engine, SCHEMA) == TRIGGER_FUNCTIONS
        assert _tables(engine, "public") == {"positions"}
        assert _functions(engine, "public") == set()
        assert _app_rows(engine) == ["the app's own"]
        assert current_revision(engine) == head_revision()

        store = PortfolioStore(engine)
        pid = store.create_portfolio("alpha", "1000")
        store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 2, "100")))
        assert store.get(pid).positions["AAPL"].quantity == Decimal("2")
        assert _app_rows(engine) == ["the app's own"]
        with engine.connect() as connection:
            count = connection.execute(text(f"SELECT count(*) FROM {SCHEMA}.positions"))
            assert count.scalar_one() == 1
    finally:
        engine.dispose()


@pytest.mark.asyncio
async def test_the_async_engine_takes_the_same_option_without_startup_parameters(
    app_database: str,
) -> None:
    migrate(app_database, schema=SCHEMA)
    engine = create_async_engine(app_database, schema=SCHEMA)
    try:
        store = AsyncPortfolioStore(engine)
        pid = await store.create_portfolio("alpha", "1000")
        await store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 2, "100")))
        await store.update_all_prices(pid, {"AAPL": "120"})
        snapshot = await store.get(pid)
        assert snapshot.positions["AAPL"].current_price == Decimal("120")
        assert [event.version for event in await store.history(pid)] == [1, 2, 3]
    finally:
        await engine.dispose()
    sync = create_engine(app_database)
    try:
        assert _app_rows(sync) == ["the app's own"]
        assert _tables(sync, "public") == {"positions"}
    finally:
        sync.dispose()


def test_migrating_again_changes_nothing(app_database: str) -> None:
    migrate(app_database, schema=SCHEMA)
    engine = create_engine(app_database, schema=SCHEMA)
    relations = text(
        "SELECT c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema ORDER BY 1"
    )
    try:
        with engine.connect() as connection:
            before = connection.execute(relations, {"schema": SCHEMA}).all()
        migrate(engine)
        with engine.connect() as connection:
            after = connection.execute(relations, {"schema": SCHEMA}).all()
        assert after == before
        assert current_revision(engine) == head_revision()
        assert current_revision(app_database) is None  # nothing in the default schema
    finally:
        engine.dispose()


def test_two_schemas_of_one_database_are_independent(app_database: str) -> None:
    migrate(app_database, schema="tenant_a")
    migrate(app_database, schema="tenant_b")
    engine_a = create_engine(app_database, schema="tenant_a")
    engine_b = create_engine(app_database, schema="tenant_b")
    try:
        same = Portfolio("shared id", "1000")
        for engine in (engine_a, engine_b):
            with UnitOfWork(engine) as uow:
                uow.portfolios.add(Portfolio("shared id", "1000", id=same.id))
                uow.commit()
        store_a, store_b = PortfolioStore(engine_a), PortfolioStore(engine_b)
        for _ in range(4):
            store_a.execute(same.id, lambda p: p.deposit("10"))
        # b's event trigger checks b's version (2), not a's (5): it would refuse otherwise.
        store_b.execute(same.id, lambda p: p.withdraw("1"), idempotency_key="k")
        store_b.execute(same.id, lambda p: p.withdraw("1"), idempotency_key="k")  # a repeat
        store_a.execute(same.id, lambda p: p.withdraw("5"), idempotency_key="k")  # a's own key

        assert store_a.get(same.id).cash_balance == Decimal("1035")
        assert store_b.get(same.id).cash_balance == Decimal("999")
        assert [e.version for e in store_a.history(same.id)] == [1, 2, 3, 4, 5, 6]
        assert [e.version for e in store_b.history(same.id)] == [1, 2]
        assert store_b.replay(same.id).cash_balance == Decimal("999")
    finally:
        engine_a.dispose()
        engine_b.dispose()


@pytest.mark.parametrize(
    "bad",
    ["", "1abc", "a b", 'x"; DROP TABLE positions; --', "pg_catalog", "PG_mine", "n" * 64, 7],
)
def test_a_bad_schema_name_is_refused_before_any_sql(bad: object) -> None:
    # Port 1 on localhost: any attempt to connect would fail differently.
    unreachable = "postgresql://nobody@127.0.0.1:1/none"
    with pytest.raises(ValidationError) as refused:
        create_engine(unreachable, schema=bad)  # type: ignore[arg-type]
    assert refused.value.field == "schema"
    with pytest.raises(ValidationError):
        create_async_engine(unreachable, schema=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        migrate(unreachable, schema=bad)  # type: ignore[arg-type]


def test_a_conflict_is_reported_with_the_versions_read_in_the_schema(app_database: str) -> None:
    migrate(app_database, schema=SCHEMA)
    engine = create_engine(app_database, schema=SCHEMA)
    try:
        pid = PortfolioStore(engine).create_portfolio("alpha", "100")
        with UnitOfWork(engine) as slow:
            slow.portfolios.get(pid).deposit("1")
            PortfolioStore(engine).execute(pid, lambda p: p.deposit("2"))
            with pytest.raises(StaleDataException) as raised:
                slow.commit()
        assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    finally:
        engine.dispose()


def test_the_command_migrates_grants_and_downgrades_in_the_schema(
    app_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    role = f"pc_schema_app_{uuid.uuid4().hex[:10]}"
    owner = create_engine(app_database, pool_size=1, max_overflow=0)
    try:
        with owner.begin() as connection:
            connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'x'"))
        try:
            argv = ["migrate", "--url", app_database, "--schema", "trading"]
            assert main([*argv, "--grant-app-role", role]) == 0
            assert f"empty -> {head_revision()}" in capsys.readouterr().out
            with owner.connect() as connection:
                usage = connection.execute(
                    text("SELECT has_schema_privilege(:r, 'trading', 'USAGE')"), {"r": role}
                ).scalar_one()
                inserts = connection.execute(
                    text("SELECT has_table_privilege(:r, 'trading.portfolio_events', 'INSERT')"),
                    {"r": role},
                ).scalar_one()
            assert usage
            assert inserts
            assert main([*argv, "--revision", "base"]) == 0
            assert _tables(owner, "trading") == {VERSION_TABLE}
            assert _functions(owner, "trading") == set()
        finally:
            with owner.begin() as connection:
                connection.execute(text(f"DROP OWNED BY {role}"))
                connection.execute(text(f"DROP ROLE {role}"))
        assert _app_rows(owner) == ["the app's own"]
    finally:
        owner.dispose()
