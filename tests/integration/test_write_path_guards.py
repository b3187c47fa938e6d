"""Write-path guards: no change reaches the database without its recorded operation and event."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session

from portfolio_core import (
    Portfolio,
    PortfolioStore,
    PositionRequest,
    UnrecordedChangeError,
    ValidationError,
    create_engine,
    grant_app_role,
)
from tests.integration.app_role import app_role_url


def _row(engine: Engine, pid: UUID) -> tuple[int, Decimal, int]:
    with engine.connect() as connection:
        version, cash = connection.execute(
            text("SELECT version, cash_balance FROM portfolios WHERE id = :id"), {"id": pid}
        ).one()
        events = connection.execute(
            text("SELECT count(*) FROM portfolio_events WHERE portfolio_id = :id"), {"id": pid}
        ).scalar_one()
    return version, cash, events


def _set_cash_exact(p: Portfolio) -> None:
    p.cash_balance = Decimal("1.123456789")  # type: ignore[assignment]


def _set_cash_float(p: Portfolio) -> None:
    p.cash_balance = 1.1  # type: ignore[assignment]


def _set_realized(p: Portfolio) -> None:
    p.realized_pnl = Decimal(7)  # type: ignore[assignment]


def _set_quantity(p: Portfolio) -> None:
    p.positions["AAPL"].quantity = Decimal(1)  # type: ignore[assignment]


@pytest.mark.parametrize("tamper", [_set_cash_exact, _set_cash_float, _set_realized, _set_quantity])
def test_money_fields_cannot_be_set_inside_execute(
    store: PortfolioStore, engine: Engine, tamper: Callable[[Portfolio], None]
) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))
    store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 2, 10)))
    before = _row(engine, pid)

    with pytest.raises(AttributeError, match="read-only"):
        store.execute(pid, tamper)

    assert _row(engine, pid) == before
    assert store.replay(pid).cash_balance == store.get(pid).cash_balance


def test_a_change_without_an_operation_is_refused_at_flush(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))

    def rename(p: Portfolio) -> None:
        p.name = "renamed behind the domain's back"

    with pytest.raises(UnrecordedChangeError) as raised:
        store.execute(pid, rename)

    assert raised.value.portfolio_id == pid
    assert _row(engine, pid) == (1, Decimal(1000), 1)
    assert store.get(pid).name == "alpha"


def test_a_hand_change_after_a_recorded_one_is_refused_too(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))

    with store.unit_of_work() as uow:
        portfolio = uow.portfolios.get(pid)
        portfolio.deposit(Decimal(5))
        uow.session.flush()
        portfolio.name = "sneaky"
        with pytest.raises(UnrecordedChangeError):
            uow.session.flush()

    assert _row(engine, pid) == (1, Decimal(1000), 1)


def test_the_domain_hooks_of_persistence_are_not_public() -> None:
    assert not hasattr(Portfolio, "record_external_operation")
    assert not hasattr(Portfolio, "take_pending_operations")


def test_a_plain_sqlalchemy_session_cannot_commit_a_portfolio(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))

    with Session(engine) as session:
        portfolio = session.get(Portfolio, pid)
        assert portfolio is not None
        portfolio.deposit(Decimal(5))
        with pytest.raises(UnrecordedChangeError, match="plain Session"):
            session.commit()

    with Session(engine) as session:
        session.add(Portfolio("bypass", Decimal(1)))
        with pytest.raises(UnrecordedChangeError):
            session.commit()

    assert _row(engine, pid) == (1, Decimal(1000), 1)
    assert len(store.history(pid)) == 1


def test_same_key_hand_increments_can_not_pass_as_the_same_request(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))

    def add(amount: int) -> Callable[[Portfolio], None]:
        def change(p: Portfolio) -> None:
            p.cash_balance += amount  # type: ignore[assignment]

        return change

    for amount in (5, 500):
        with pytest.raises(AttributeError):
            store.execute(pid, add(amount), idempotency_key="k")

    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM idempotency_keys")).scalar() == 0
    assert _row(engine, pid) == (1, Decimal(1000), 1)


def _forge(url: str, pid: UUID, version: int, *, bump: bool = False) -> None:
    forger = create_engine(url)
    try:
        with forger.begin() as connection:
            if bump:
                connection.execute(
                    text("UPDATE portfolios SET version = version WHERE id = :p"), {"p": pid}
                )
            connection.execute(
                text(
                    "INSERT INTO portfolio_events (portfolio_id, version, operations) "
                    "VALUES (:p, :v, '[]')"
                ),
                {"p": pid, "v": version},
            )
    finally:
        forger.dispose()


def test_the_database_refuses_an_event_at_another_version(
    store: PortfolioStore, database_url: str
) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))
    store.execute(pid, lambda p: p.deposit(1))

    with app_role_url(database_url) as app_url:
        with pytest.raises(DBAPIError, match="is at version 2"):
            _forge(app_url, pid, 999)
        # Even at the current version: that version was written by another transaction.
        with pytest.raises(DBAPIError, match="did not bump"):
            _forge(database_url, pid, 2)
    assert [event.version for event in store.history(pid)] == [1, 2]


@pytest.mark.parametrize("in_savepoint", [False, True])
def test_the_event_trigger_admits_the_version_this_transaction_wrote(
    store: PortfolioStore, engine: Engine, in_savepoint: bool
) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))
    bump = text("UPDATE portfolios SET version = version + 1 WHERE id = :p")
    with engine.begin() as connection:
        connection.execute(text("SELECT txid_current()"))  # the top-level xid comes first
        if in_savepoint:  # the row's xmin is then the savepoint's own xid
            with connection.begin_nested():
                connection.execute(bump, {"p": pid})
        else:
            connection.execute(bump, {"p": pid})
        connection.execute(
            text(
                "INSERT INTO portfolio_events (portfolio_id, version, operations) "
                "VALUES (:p, 2, '[]')"
            ),
            {"p": pid},
        )
    assert [event.version for event in store.history(pid)] == [1, 2]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE portfolio_events SET operations = '[]'",
        "DELETE FROM portfolio_events",
        "TRUNCATE portfolio_events",
        "ALTER TABLE portfolio_events DISABLE TRIGGER portfolio_events_no_update_delete",
        "ALTER TABLE portfolio_events DISABLE TRIGGER ALL",
        "SET session_replication_role = replica",
        "DELETE FROM portfolios",
    ],
)
def test_the_app_role_cannot_rewrite_the_audit_trail(
    store: PortfolioStore, database_url: str, statement: str
) -> None:
    pid = store.create_portfolio("alpha", Decimal(1000))

    with app_role_url(database_url) as app_url:
        app = create_engine(app_url)
        try:
            with pytest.raises(ProgrammingError) as raised, app.begin() as connection:
                connection.execute(text(statement))
        finally:
            app.dispose()

    # 42501 insufficient_privilege (42501), or "must be owner" (42501 too).
    assert getattr(raised.value.orig, "pgcode", None) == "42501"
    assert len(store.history(pid)) == 1


def test_grant_app_role_refuses_a_superuser_and_an_unknown_role(engine: Engine) -> None:
    with engine.connect() as connection:
        superuser = str(connection.execute(text("SELECT current_user")).scalar_one())

    with pytest.raises(ValidationError, match="superuser or owns"):
        grant_app_role(engine, superuser)
    with pytest.raises(ValidationError, match="does not exist"):
        grant_app_role(engine, "pc_no_such_role_at_all")
