"""Retries of whole units of work against real conflicts, lost connections and refused locks.

Conflicts are forced, not hoped for: the operation itself commits a concurrent
change to the same portfolio from a second unit of work (another connection)
before its own unit of work commits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session, object_session

from portfolio_core import (
    CommitOutcomeUnknownException,
    OptimisticLockException,
    Portfolio,
    PortfolioStore,
    PositionRequest,
    StaleDataException,
    UnitOfWork,
)
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.units import Seconds
from tests.integration.helpers import backend_pid, create_portfolio, row_locked


def concurrent_deposit(engine: Engine, pid: UUID, amount: str = "1") -> None:
    """Commit a deposit to ``pid`` from a unit of work of its own (another connection)."""
    with UnitOfWork(engine) as other:
        other.portfolios.get(pid).deposit(Decimal(amount))
        other.commit()


class Interfering:
    """An operation that deposits ``amount``; on its first ``conflicts`` calls it first lets
    another unit of work commit a deposit of 1 to the same portfolio (a certain conflict)."""

    def __init__(self, engine: Engine, amount: str, conflicts: int) -> None:
        self.engine = engine
        self.amount = Decimal(amount)
        self.conflicts = conflicts
        self.calls = 0

    def __call__(self, portfolio: Portfolio) -> int:
        self.calls += 1
        if self.calls <= self.conflicts:
            concurrent_deposit(self.engine, portfolio.id)
        portfolio.deposit(self.amount)
        return self.calls


def test_conflicts_on_every_attempt_exhaust_into_optimistic_lock_exception(
    store: PortfolioStore, engine: Engine, service: ConcurrencyService, no_sleep: list[float]
) -> None:
    pid = store.create_portfolio("hot", Decimal("100"))
    operation = Interfering(engine, "10", conflicts=1_000)

    with pytest.raises(OptimisticLockException) as caught:
        store.execute(pid, operation, lock="optimistic")

    error = caught.value
    assert error.retries == service.policy.max_retries == 5
    assert (error.entity_type, error.entity_id) == ("Portfolio", pid)
    assert isinstance(error.last_error, StaleDataException)
    assert error.__cause__ is error.last_error
    # The last attempt loaded version 6; the sixth concurrent deposit made it 7.
    assert (error.last_error.expected_version, error.last_error.actual_version) == (6, 7)
    assert operation.calls == 6
    assert len(no_sleep) == 5
    after = store.get(pid)
    assert (after.cash_balance, after.version) == (Decimal("106"), 7)
    assert service.get_metrics() == {
        "version_conflicts": 6,
        "successful_retries": 0,
        "failed_retries": 1,
        "deadlocks_detected": 0,
        "lock_timeouts": 0,
        "serialization_failures": 0,
    }


def test_scripted_scenario_gives_exact_metrics(engine: Engine) -> None:
    holder: list[Connection] = []

    def sleep(_: Seconds) -> None:
        # The backoff after a refused NOWAIT is where the lock holder lets go.
        if holder:
            holder.pop().commit()

    service = ConcurrencyService(engine, max_retries=5, sleep=sleep)
    store = PortfolioStore(engine, service)
    pid = store.create_portfolio("scripted", Decimal("100"))

    # 1. two conflicts, then success.
    assert store.execute(pid, Interfering(engine, "10", conflicts=2), lock="optimistic") == 3
    # 2. NOWAIT refused once (55P03), granted on the retry.
    with engine.connect() as connection:
        connection.begin()
        connection.execute(text("SELECT 1 FROM portfolios WHERE id = :p FOR UPDATE"), {"p": pid})
        holder.append(connection)
        store.execute(pid, lambda p: p.withdraw(Decimal("5")), lock="nowait")
    # 3. a plain success, with no retry.
    store.execute(pid, lambda p: p.deposit(Decimal("1")), lock="wait")
    # 4. conflicts outlast the policy: 6 attempts, all stale.
    with pytest.raises(OptimisticLockException):
        store.execute(pid, Interfering(engine, "10", conflicts=1_000), lock="optimistic")

    assert service.get_metrics() == {
        "version_conflicts": 2 + 6,
        "successful_retries": 2,
        "failed_retries": 1,
        "deadlocks_detected": 0,
        "lock_timeouts": 1,
        "serialization_failures": 0,
    }
    assert store.metrics() == service.get_metrics()
    after = store.get(pid)
    # 100 + (2 + 10) - 5 + 1 + 6 concurrent deposits; one version per committed change.
    assert (after.cash_balance, after.version) == (Decimal("114"), 1 + 3 + 1 + 1 + 6)
    assert after.money_invariant_holds()


def test_connection_killed_before_commit_is_retried_transparently(
    store: PortfolioStore, engine: Engine, service: ConcurrencyService
) -> None:
    pid = store.create_portfolio("victim", Decimal("100"))
    calls: list[int] = []

    def deposit_after_losing_the_connection_once(portfolio: Portfolio) -> None:
        session = object_session(portfolio)
        assert session is not None
        if not calls:
            victim = backend_pid(session)
            with engine.connect() as killer:
                # Waits (up to 10 s) until the backend is gone.
                assert killer.execute(
                    text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": victim}
                ).scalar_one()
        calls.append(1)
        portfolio.deposit(Decimal("25"))

    store.execute(pid, deposit_after_losing_the_connection_once)

    assert len(calls) == 2
    after = store.get(pid)
    assert (after.cash_balance, after.version) == (Decimal("125"), 2)
    assert service.get_metrics()["successful_retries"] == 1


def test_connection_killed_during_commit_is_outcome_unknown_and_not_retried(
    store: PortfolioStore, engine: Engine, service: ConcurrencyService
) -> None:
    pid = store.create_portfolio("in-doubt", Decimal("100"))
    calls: list[int] = []
    armed: list[bool] = []

    def kill_before_commit_reaches_the_server(connection: Connection) -> None:
        if armed:
            armed.clear()
            victim = backend_pid(connection)
            with engine.connect() as killer:
                killer.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": victim})

    def deposit(portfolio: Portfolio) -> None:
        calls.append(1)
        portfolio.deposit(Decimal("25"))
        armed.append(True)

    event.listen(engine, "commit", kill_before_commit_reaches_the_server)
    try:
        with pytest.raises(CommitOutcomeUnknownException) as caught:
            store.execute(pid, deposit)
    finally:
        event.remove(engine, "commit", kill_before_commit_reaches_the_server)

    assert caught.value.__cause__ is not None
    assert len(calls) == 1
    assert service.get_metrics() == dict.fromkeys(service.get_metrics(), 0)
    # Here the server never saw COMMIT; the library could not know that.
    assert store.get(pid).cash_balance == Decimal("100")


def test_nowait_retries_until_the_lock_is_free_and_counts_each_refusal(
    engine: Engine,
) -> None:
    released: list[int] = []
    holder: list[Connection] = []

    def sleep(_: Seconds) -> None:
        released.append(1)
        if len(released) == 3:
            holder.pop().commit()

    service = ConcurrencyService(engine, max_retries=5, sleep=sleep)
    store = PortfolioStore(engine, service)
    pid = store.create_portfolio("busy", Decimal("100"))

    with row_locked(engine, pid) as connection:
        holder.append(connection)
        store.execute(pid, lambda p: p.deposit(Decimal("1")), lock="nowait")

    assert service.get_metrics()["lock_timeouts"] == 3
    assert service.get_metrics()["successful_retries"] == 1
    assert store.get(pid).cash_balance == Decimal("101")


def test_open_position_transactional_commits_on_its_own_and_is_retried(
    store: PortfolioStore, engine: Engine, service: ConcurrencyService
) -> None:
    pid = store.create_portfolio("own-tx", Decimal("1000"))
    interfered: list[bool] = []

    def interfere_once(
        conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if statement.startswith("UPDATE portfolios") and not interfered:
            interfered.append(True)  # set first: the deposit below is an UPDATE too
            concurrent_deposit(engine, pid)

    event.listen(engine, "before_cursor_execute", interfere_once)
    try:
        with UnitOfWork(engine, concurrency_service=service) as uow:
            position = uow.portfolios.open_position_transactional(
                pid, PositionRequest("AAPL", 2, "100")
            )
            # The caller's unit of work is rolled back; the position stays committed.
            uow.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", interfere_once)

    assert (position.symbol, position.quantity) == ("AAPL", Decimal("2"))
    after = store.get(pid)
    assert list(after.positions) == ["AAPL"]
    assert (after.cash_balance, after.version) == (Decimal("801"), 3)
    assert after.money_invariant_holds()
    metrics = service.get_metrics()
    assert (metrics["version_conflicts"], metrics["successful_retries"]) == (1, 1)


def test_retry_runs_the_whole_unit_of_work_again_in_a_fresh_session(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("fresh", Decimal("100"))
    seen: list[tuple[object, Decimal, int]] = []
    operation = Interfering(engine, "10", conflicts=1)

    def observe(portfolio: Portfolio) -> int:
        session = object_session(portfolio)
        seen.append((session, portfolio.cash_balance, portfolio.version))
        return operation(portfolio)

    store.execute(pid, observe)

    (first_session, *_), (second_session, cash, version) = seen
    assert first_session is not second_session
    # The retry reloaded what the concurrent unit of work committed.
    assert (cash, version) == (Decimal("101"), 2)


def test_serialization_failure_40001_is_retried_and_counted_apart(
    store: PortfolioStore, engine: Engine, service: ConcurrencyService
) -> None:
    pid = store.create_portfolio("repeatable", Decimal("100"))
    repeatable_read = engine.execution_options(isolation_level="REPEATABLE READ")
    add_one = text(
        "UPDATE portfolios SET cash_balance = cash_balance + 1, "
        "total_deposits = total_deposits + 1, version = version + 1 WHERE id = :pid"
    )
    attempts: list[int] = []

    def work() -> None:
        attempts.append(1)
        with repeatable_read.connect() as connection, connection.begin():
            # The snapshot is taken here; a change committed after it cannot
            # be updated over at REPEATABLE READ: PostgreSQL raises 40001.
            connection.execute(text("SELECT version FROM portfolios WHERE id = :pid"), {"pid": pid})
            if len(attempts) == 1:
                concurrent_deposit(engine, pid)
            connection.execute(add_one, {"pid": pid})

    service.run(work, entity_type="Portfolio", entity_id=pid)

    assert len(attempts) == 2
    assert service.get_metrics()["serialization_failures"] == 1
    assert service.get_metrics()["version_conflicts"] == 0
    assert service.get_metrics()["successful_retries"] == 1
    after = store.get(pid)
    assert (after.cash_balance, after.version) == (Decimal("102"), 3)


@pytest.mark.parametrize("session_kind", ["unit_of_work_session", "plain_session"])
def test_connection_killed_during_a_commit_the_work_makes_itself_is_never_retried(
    engine: Engine, service: ConcurrencyService, session_kind: str
) -> None:
    """Work that commits on its own (uow.session.commit(), or a Session of its
    own) and loses the connection during COMMIT gets an unknown outcome, not a
    blind retry that would apply the deposit twice."""
    pid = create_portfolio(engine, Decimal("100"))
    calls: list[int] = []
    armed: list[bool] = []

    def kill_before_commit_reaches_the_server(connection: Connection) -> None:
        if armed:
            armed.clear()
            victim = backend_pid(connection)
            with engine.connect() as killer:
                killer.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": victim})

    def work() -> None:
        calls.append(1)
        if session_kind == "plain_session":
            with Session(engine) as session:
                session.execute(
                    text("UPDATE portfolios SET name = 'renamed' WHERE id = :pid"), {"pid": pid}
                )
                armed.append(True)
                session.commit()
            return
        with UnitOfWork(engine) as uow:
            uow.portfolios.get(pid).deposit(Decimal("10"))
            armed.append(True)
            uow.session.commit()

    event.listen(engine, "commit", kill_before_commit_reaches_the_server)
    try:
        with pytest.raises(CommitOutcomeUnknownException):
            service.run(work, entity_type="Portfolio", entity_id=pid)
    finally:
        event.remove(engine, "commit", kill_before_commit_reaches_the_server)

    assert len(calls) == 1
