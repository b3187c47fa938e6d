"""Shared integration-test tools: portfolios through a UnitOfWork, empty databases,
a second connection holding row locks, and waiting for a backend to block on a lock."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from portfolio_core import Portfolio, UnitOfWork, create_engine
from portfolio_core.persistence.locking import advisory_key
from portfolio_core.units import Seconds

LOCK_ROW = text("SELECT id FROM portfolios WHERE id = :pid FOR UPDATE")
_TRY_ENTITY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")


@contextmanager
def row_locked(engine: Engine, *portfolio_ids: UUID) -> Iterator[Connection]:
    """Another transaction holding FOR UPDATE locks on these portfolios for the block."""
    with engine.connect() as connection, connection.begin():
        for pid in portfolio_ids:
            connection.execute(LOCK_ROW, {"pid": pid})
        yield connection


def backend_pid(connection: Connection | Session) -> int:
    """The PostgreSQL server process serving this connection (or session)."""
    return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


# A waiter shows up in pg_locks within milliseconds; 2000 polls of at most 10 ms
# bound a test that would otherwise hang to about 20 s.
_LOCK_WAIT_POLLS = 2000
_LOCK_WAIT_PAUSE: Seconds = 0.01
_WAITING_ON_A_LOCK = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE NOT l.granted AND a.datname = current_database() "
    "AND (CAST(:pid AS integer) IS NULL OR l.pid = :pid))"
)


def wait_until_blocked(engine: Engine, pid: int | None = None) -> None:
    """Return once PostgreSQL shows backend ``pid`` (or, without one, any backend of
    this database) waiting for a lock it has not been granted (pg_locks).

    This waits for an observable server state, not for time to pass: the race
    it orders is decided by the lock manager. Polls are few and bounded, each
    paused by an Event that nobody sets; never reaching that state fails the test.
    """
    pause = threading.Event()
    with engine.connect() as connection:
        for _ in range(_LOCK_WAIT_POLLS):
            waiting = connection.execute(_WAITING_ON_A_LOCK, {"pid": pid}).scalar_one()
            connection.rollback()  # a fresh snapshot of the server's state for each poll
            if waiting:
                return
            pause.wait(_LOCK_WAIT_PAUSE)
    raise AssertionError(f"backend {pid or 'of this database'} never waited for a lock")


def create_portfolio(engine: Engine, cash: Decimal | int | str = 10_000, name: str = "p") -> UUID:
    """Commit a new portfolio (version 1) and return its id."""
    portfolio = Portfolio(name, cash)
    with UnitOfWork(engine) as uow:
        uow.portfolios.add(portfolio)
        uow.commit()
    return portfolio.id


def reload(engine: Engine, portfolio_id: UUID) -> Portfolio:
    """A detached copy of the committed portfolio, open and closed positions loaded."""
    with UnitOfWork(engine) as uow:
        snapshot = uow.portfolios.get_snapshot(portfolio_id)
        # Detach before the unit of work rolls back, which would expire every attribute.
        uow.session.expunge_all()
    return snapshot


def stored_version(engine: Engine, portfolio_id: UUID) -> int:
    """The version column as committed, read with plain SQL."""
    with engine.connect() as connection:
        version: Any = connection.execute(
            text("SELECT version FROM portfolios WHERE id = :id"), {"id": portfolio_id}
        ).scalar_one()
    return int(version)


@contextmanager
def empty_database(server_url: str) -> Iterator[str]:
    """A brand-new database with no tables at all (not copied from the migrated template)."""
    name = f"pc_empty_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def table_names(url: str, schema: str | None = None) -> set[str]:
    """The tables of ``schema`` (default: the public schema)."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names(schema=schema))
    finally:
        engine.dispose()


def commit_deposit_behind_the_back(engine: Engine, portfolio_id: UUID) -> None:
    """Another writer deposits 1 and bumps the version, as the library would.

    Bounded: a test that calls it while its own unit of work holds the row
    lock (``lock="auto"`` after a conflict, ``"wait"``) fails with a lock
    timeout instead of waiting for itself forever.
    """
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL lock_timeout = '10s'"))
        connection.execute(
            text(
                "UPDATE portfolios SET cash_balance = cash_balance + 1, "
                "total_deposits = total_deposits + 1, version = version + 1 WHERE id = :id"
            ),
            {"id": portfolio_id},
        )


def held_elsewhere(engine: Engine, entity_id: object, entity_type: str = "Portfolio") -> bool:
    """Whether another connection is refused this entity's advisory lock right now."""
    with engine.connect() as probe, probe.begin():
        key = advisory_key(entity_type, entity_id)
        return not probe.execute(_TRY_ENTITY_LOCK, {"key": key}).scalar_one()
