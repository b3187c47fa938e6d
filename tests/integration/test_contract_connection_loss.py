"""Lost connections: retried when nothing can have committed, reported when COMMIT was in doubt.

Contract cases: each runs for the sync and the async flavour (the ``flavour``
fixture, tests/integration/conftest.py; API in contract_api.py). A backend is
killed with pg_terminate_backend from a direct connection, which waits until
it is gone: the loss happens at a chosen point, not by chance.
"""

from __future__ import annotations

import socket
from decimal import Decimal
from uuid import uuid4

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from portfolio_core import (
    CommitOutcomeUnknownException,
    ConnectionLostError,
    DatabaseConnectionError,
)
from tests.integration.contract_api import ContractUnitOfWork, Flavour, open_flavour

pytestmark = pytest.mark.asyncio


async def _kill_the_backend_of(flavour: Flavour, uow: ContractUnitOfWork, engine: Engine) -> None:
    victim = await flavour.scalar(uow, "SELECT pg_backend_pid()")
    with engine.connect() as killer:
        # Waits (up to 10 s) until the backend is gone.
        assert killer.execute(
            text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": victim}
        ).scalar_one()


async def test_connection_killed_before_commit_is_retried_transparently(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("victim", Decimal("100"))
    attempts = 0

    async def deposit_losing_the_first_connection() -> None:
        nonlocal attempts
        attempts += 1
        async with flavour.store.unit_of_work() as uow:
            (await uow.portfolios.get(pid)).deposit(Decimal("25"))
            if attempts == 1:
                await _kill_the_backend_of(flavour, uow, engine)
            await uow.commit()

    await flavour.retried(deposit_losing_the_first_connection, pid)

    assert attempts == 2
    after = await flavour.store.get(pid)
    assert (after.cash_balance, after.version) == (Decimal("125"), 2)
    assert flavour.store.metrics()["successful_retries"] == 1


async def test_connection_killed_before_a_read_of_the_unit_of_work_is_retried(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("victim", Decimal("100"))
    attempts = 0

    async def deposit_after_losing_the_connection() -> None:
        nonlocal attempts
        attempts += 1
        async with flavour.store.unit_of_work() as uow:
            if attempts == 1:
                await _kill_the_backend_of(flavour, uow, engine)
            # The read meets the dead connection: nothing can have committed.
            (await uow.portfolios.get(pid)).deposit(Decimal("25"))
            await uow.commit()

    await flavour.retried(deposit_after_losing_the_connection, pid)

    assert attempts == 2
    after = await flavour.store.get(pid)
    assert (after.cash_balance, after.version) == (Decimal("125"), 2)


async def test_connection_killed_during_commit_is_outcome_unknown_and_not_retried(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("in-doubt", Decimal("100"))
    attempts = 0

    async def lose_the_connection_at_commit() -> None:
        nonlocal attempts
        attempts += 1
        async with flavour.store.unit_of_work() as uow:
            (await uow.portfolios.get(pid)).deposit(Decimal("25"))
            # Flushed and audit events written: all that is left for commit() is COMMIT.
            await flavour.write_pending_events(uow)
            await _kill_the_backend_of(flavour, uow, engine)
            await uow.commit()

    with pytest.raises(CommitOutcomeUnknownException) as raised:
        await flavour.retried(lose_the_connection_at_commit, pid)

    assert raised.value.__cause__ is not None
    assert attempts == 1
    assert flavour.store.metrics() == dict.fromkeys(flavour.store.metrics(), 0)
    assert flavour.connections_checked_out() == 0
    # Here the server never saw COMMIT; the library could not know that.
    assert (await flavour.store.get(pid)).cash_balance == Decimal("100")


async def test_unreachable_database_is_retried_then_reported_as_connection_error(
    flavour: Flavour, database_url: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    # Nothing listens on that port any more: every connection attempt is refused.
    url = make_url(database_url).set(host="127.0.0.1", port=closed_port)
    waits: list[float] = []

    async with open_flavour(
        flavour.name, url, waits.append, max_retries=2, **flavour.engine_options
    ) as unreachable:
        with pytest.raises(DatabaseConnectionError) as raised:
            await unreachable.store.get(uuid4())

    assert raised.value.attempts == 3
    assert len(waits) == 2
    assert isinstance(raised.value.__cause__, ConnectionLostError)
