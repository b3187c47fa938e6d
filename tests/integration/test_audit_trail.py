"""The audit trail: one event per committed unit of work per portfolio, append-only."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from portfolio_core import (
    Portfolio,
    PortfolioOperation,
    PortfolioStore,
    PositionRequest,
    StaleDataException,
    UnitOfWork,
)
from portfolio_core.migrations import VERSION_TABLE, downgrade, migrate
from portfolio_core.persistence.schema import metadata
from portfolio_core.persistence.session import PortfolioSession


def _kinds(store: PortfolioStore, pid: UUID) -> list[list[str]]:
    return [[op.kind for op in event.operations] for event in store.history(pid)]


def _buy_and_reprice(portfolio: Portfolio) -> None:
    portfolio.open_position(PositionRequest("AAPL", 10, "150"))
    portfolio.update_position_price("AAPL", 151)


def test_each_committed_unit_of_work_writes_one_event_at_the_new_version(
    store: PortfolioStore,
) -> None:
    pid = store.create_portfolio("alpha", Decimal("10000"))
    store.execute(pid, lambda p: p.deposit(Decimal("250")))
    store.execute(
        pid,
        _buy_and_reprice,
        lock="wait",
    )
    store.execute(pid, lambda p: p.close_position("AAPL", "160", 4), lock="nowait")
    store.execute(pid, lambda p: p.cash_balance)  # reads only: no version, no event

    history = store.history(pid)

    assert (
        [event.version for event in history]
        == [1, 2, 3, 4]
        == list(range(1, store.get(pid).version + 1))
    )
    assert _kinds(store, pid) == [
        ["created"],
        ["deposit"],
        ["open_position", "update_position_price"],
        ["close_position"],
    ]
    assert history[0].operations[0] == PortfolioOperation(
        "created", {"name": "alpha", "cash_balance": Decimal("10000")}
    )
    assert history[3].operations[0].arguments == {
        "symbol": "AAPL",
        "exit_price": Decimal("160"),
        "quantity": Decimal("4"),
    }
    assert all(event.idempotency_key is None for event in history)
    assert [e.occurred_at for e in history] == sorted(e.occurred_at for e in history)
    assert [event.version for event in store.history(pid, since_version=2)] == [3, 4]


def test_sql_paths_record_their_operations(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal("10000"))
    store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 10, "150")))
    store.update_all_prices(pid, {"AAPL": Decimal("155"), "MSFT": Decimal("1")})
    with UnitOfWork(store.engine) as uow:
        uow.portfolios.update_portfolio_atomic(pid, {"name": "beta", "cash_balance": 9000}, 3)
        uow.commit()

    history = store.history(pid)

    assert [e.version for e in history] == [1, 2, 3, 4]
    assert history[2].operations == (
        PortfolioOperation("update_all_prices", {"prices": {"AAPL": Decimal("155")}}),
    )
    assert [op.kind for op in history[3].operations] == ["set_name", "set_cash_balance"]
    replayed, stored = store.replay(pid), store.get(pid)
    assert (replayed.name, replayed.cash_balance, replayed.total_withdrawals) == (
        stored.name,
        stored.cash_balance,
        stored.total_withdrawals,
    )
    assert replayed.positions["AAPL"].current_price == Decimal("155")


def test_batches_and_offline_copies_write_one_event_per_portfolio(store: PortfolioStore) -> None:
    first = store.create_portfolio("first", Decimal("1000"))
    second = store.create_portfolio("second", Decimal("1000"))
    store.batch_update({first: lambda p: p.deposit(1), second: lambda p: p.withdraw(2)})
    copy = store.get(first)
    copy.deposit(Decimal("3"))
    copy.deposit(Decimal("4"))
    with UnitOfWork(store.engine) as uow:
        uow.portfolios.update_portfolio(copy)
        uow.commit()

    assert _kinds(store, first) == [["created"], ["deposit"], ["deposit", "deposit"]]
    assert _kinds(store, second) == [["created"], ["withdraw"]]
    assert store.replay(first).cash_balance == store.get(first).cash_balance == Decimal("1008")


def test_operations_rolled_back_are_not_recorded(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    with UnitOfWork(store.engine) as uow:
        portfolio = uow.portfolios.get(pid)
        portfolio.deposit(Decimal("1"))
        uow.rollback()
        portfolio.deposit(Decimal("2"))
        uow.commit()

    assert [dict(op.arguments) for op in store.history(pid, 1)[0].operations] == [
        {"amount": Decimal("2")}
    ]
    assert store.replay(pid).cash_balance == store.get(pid).cash_balance == Decimal("1002")


def test_a_refused_atomic_update_does_not_skew_the_version_bookkeeping(
    store: PortfolioStore,
) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    store.execute(pid, lambda p: p.deposit(Decimal("1")))
    with UnitOfWork(store.engine) as uow:
        with pytest.raises(StaleDataException):
            uow.portfolios.update_portfolio_atomic(pid, {"name": "stale"}, 1)
        uow.portfolios.get(pid).deposit(Decimal("2"))
        uow.commit()

    assert store.get(pid).version == 3 == len(store.history(pid))
    assert store.replay(pid).cash_balance == Decimal("1003")


def test_a_plain_portfolio_session_commit_writes_events_too(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    with PortfolioSession(bind=store.engine, autoflush=False) as session:
        portfolio = session.get(Portfolio, pid)
        assert portfolio is not None
        portfolio.deposit(Decimal("5"))
        session.commit()

    assert _kinds(store, pid) == [["created"], ["deposit"]]


def test_replay_rebuilds_each_past_version(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    store.execute(pid, lambda p: p.deposit(Decimal("1")))
    store.execute(pid, lambda p: p.withdraw(Decimal("500")))

    assert [store.replay(pid, v).cash_balance for v in (1, 2, 3)] == [
        Decimal("1000"),
        Decimal("1001"),
        Decimal("501"),
    ]
    assert store.replay(pid, 2).version == 2


def test_a_savepoint_inside_a_unit_of_work_does_not_bump_twice(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    other = store.create_portfolio("beta", Decimal("1000"))
    with UnitOfWork(store.engine) as uow:
        uow.portfolios.get(pid).deposit(Decimal("1"))
        uow.portfolios.get_portfolio_for_update(other)  # flushes, then a savepoint
        uow.portfolios.get(pid).deposit(Decimal("2"))
        uow.commit()

    assert store.get(pid).version == 2
    assert _kinds(store, pid)[1] == ["deposit", "deposit"]


def test_event_key_is_a_second_optimistic_guard(store: PortfolioStore, engine: Engine) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    with engine.begin() as connection:  # someone else's event already claims version 2
        # Only a superuser gets past the event-version trigger this way (see
        # test_write_path_guards): the PK is the guard left when it does.
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(
            text(
                "INSERT INTO portfolio_events (portfolio_id, version, operations) "
                "VALUES (:p, 2, '[]')"
            ),
            {"p": pid},
        )

    with UnitOfWork(engine) as uow:
        uow.portfolios.get(pid).deposit(Decimal("1"))
        with pytest.raises(StaleDataException):
            uow.commit()

    assert store.get(pid).version == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE portfolio_events SET operations = '[]'",
        "DELETE FROM portfolio_events",
        "TRUNCATE portfolio_events",
    ],
)
def test_database_refuses_to_change_events_even_for_the_owner(
    store: PortfolioStore, engine: Engine, statement: str
) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    with engine.connect() as connection:
        assert connection.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar()

    with pytest.raises(DBAPIError) as raised, engine.begin() as connection:
        connection.execute(text(statement))

    assert getattr(raised.value.orig, "pgcode", None) == "P0001"
    assert "append-only" in str(raised.value.orig)
    assert len(store.history(pid)) == 1


def test_migration_0002_matches_the_schema_and_downgrades_cleanly(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "version_table": VERSION_TABLE,
            },
        )
        assert compare_metadata(context, metadata) == []

    downgrade(engine, "pc0001_portfolios")
    tables = set(inspect(engine).get_table_names())
    assert {"portfolio_events", "idempotency_keys"}.isdisjoint(tables)
    with engine.connect() as connection:
        functions = connection.execute(
            text("SELECT count(*) FROM pg_proc WHERE proname = 'portfolio_events_append_only'")
        ).scalar_one()
    assert functions == 0

    migrate(engine)
    inspector = inspect(engine)
    assert {"portfolio_events", "idempotency_keys"} <= set(inspector.get_table_names())
    with engine.connect() as connection:
        triggers = connection.execute(
            text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'portfolio_events_%'")
        ).scalar_one()
    assert triggers == 3


def test_metadata_create_all_builds_the_same_append_only_table(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA copy"))
        connection.execute(text("SET search_path TO copy"))
        metadata.create_all(connection)
        connection.execute(
            text(
                "INSERT INTO portfolios (id, name, cash_balance, initial_cash, version) "
                "VALUES ('00000000-0000-0000-0000-000000000001', 'a', 0, 0, 1)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO portfolio_events (portfolio_id, version, operations) "
                "VALUES ('00000000-0000-0000-0000-000000000001', 1, '[]')"
            )
        )
        with pytest.raises(DBAPIError), connection.begin_nested():
            connection.execute(text("DELETE FROM portfolio_events"))
        metadata.drop_all(connection)
