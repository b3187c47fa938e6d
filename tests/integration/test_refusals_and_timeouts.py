"""The server's refusals and timeouts come out typed, with its reason, and are not retried."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from portfolio_core import (
    AsyncPortfolioStore,
    DatabaseAccessError,
    DatabaseConnectionError,
    PoolTimeoutError,
    PortfolioStore,
    StatementTimeoutError,
    create_async_engine,
    create_engine,
    migrate,
)
from portfolio_core.concurrency import ConcurrencyService


def _store(url: str, waits: list[float], **engine_options: Any) -> PortfolioStore:
    engine = create_engine(url, **engine_options)
    return PortfolioStore(engine, ConcurrencyService(engine, max_retries=3, sleep=waits.append))


def _refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def password_role(database_url: str, engine: Engine) -> Iterator[tuple[str, str]]:
    """A role that logs in with a password: (name, password)."""
    name, password = f"pc_role_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
    yield name, password
    with engine.begin() as connection:
        connection.execute(text(f"DROP ROLE IF EXISTS {name}"))


def test_an_unknown_database_is_refused_once_with_the_servers_reason(database_url: str) -> None:
    waits: list[float] = []
    url = make_url(database_url).set(database="no_such_database")
    store = _store(url.render_as_string(hide_password=False), waits)
    with pytest.raises(DatabaseAccessError) as caught:
        store.create_portfolio("p", 1)
    store.engine.dispose()
    assert caught.value.sqlstate == "3D000"
    assert 'database "no_such_database" does not exist' in str(caught.value)
    assert waits == []


def test_a_wrong_password_is_refused_once_with_the_servers_reason(
    database_url: str, password_role: tuple[str, str]
) -> None:
    waits: list[float] = []
    url = make_url(database_url).set(username=password_role[0], password="wrong")
    store = _store(url.render_as_string(hide_password=False), waits)
    with pytest.raises(DatabaseAccessError) as caught:
        store.get(uuid.uuid4())
    store.engine.dispose()
    assert caught.value.sqlstate == "28P01"
    assert "password authentication failed" in str(caught.value)
    assert waits == []


@pytest.mark.asyncio
async def test_the_async_store_is_refused_the_same_way(database_url: str) -> None:
    url = make_url(database_url).set(database="no_such_database")
    engine = create_async_engine(url)
    store = AsyncPortfolioStore(engine)
    try:
        with pytest.raises(DatabaseAccessError) as caught:
            await store.create_portfolio("p", 1)
    finally:
        await engine.dispose()
    assert caught.value.sqlstate == "3D000"
    assert "no_such_database" in str(caught.value)


def test_an_unreachable_server_names_libpqs_reason_after_the_retries() -> None:
    waits: list[float] = []
    store = _store(f"postgresql://u@127.0.0.1:{_refused_port()}/db", waits)
    with pytest.raises(DatabaseConnectionError) as caught:
        store.create_portfolio("p", 1)
    assert "Connection refused" in str(caught.value)
    assert len(waits) == 3


def test_migrate_on_an_unreachable_server_raises_a_typed_error() -> None:
    with pytest.raises(DatabaseConnectionError) as caught:
        migrate(f"postgresql://u@127.0.0.1:{_refused_port()}/db")
    assert "Connection refused" in str(caught.value)


def test_a_statement_timeout_is_typed_and_not_retried(database_url: str, engine: Engine) -> None:
    waits: list[float] = []
    store = _store(database_url, waits, connect_args={"options": "-c statement_timeout=200"})
    pid = store.create_portfolio("p", 100)
    holder = engine.connect()
    holder.execute(text("SELECT 1 FROM portfolios WHERE id = :id FOR UPDATE"), {"id": pid})
    try:
        with pytest.raises(StatementTimeoutError) as caught:
            store.execute(pid, lambda p: p.deposit(1), lock="wait")
    finally:
        holder.rollback()
        holder.close()
        store.engine.dispose()
    assert "statement timeout" in str(caught.value)
    assert waits == []


def test_an_exhausted_pool_is_a_typed_error(database_url: str) -> None:
    waits: list[float] = []
    store = _store(database_url, waits, pool_size=1, max_overflow=0, pool_timeout=0.05)
    pid = store.create_portfolio("p", 100)
    taken = threading.Event()
    release = threading.Event()

    def hold_the_only_connection() -> None:
        with store.engine.connect():
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    taken.wait()
    try:
        with pytest.raises(PoolTimeoutError):
            store.get(pid)
    finally:
        release.set()
        holder.join()
        store.engine.dispose()
    assert waits == []
