"""entity_lock: PostgreSQL advisory locks that exclude other connections, processes and hosts."""

from __future__ import annotations

import multiprocessing
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from portfolio_core import ConfigurationError, PessimisticLockException, PortfolioStore, UnitOfWork
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.persistence.locking import advisory_key
from tests.integration.workers import WAIT, contend_for_entity_lock

TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")


def held_elsewhere(engine: Engine, entity_id: object) -> bool:
    """Whether another connection is refused this entity's advisory lock right now."""
    with engine.connect() as probe, probe.begin():
        key = advisory_key("Portfolio", entity_id)
        return not probe.execute(TRY_LOCK, {"key": key}).scalar_one()


def test_entity_lock_excludes_a_second_os_process_until_released(
    service: ConcurrencyService, store: PortfolioStore, database_url: str
) -> None:
    pid = store.create_portfolio("shared", Decimal("1"))
    context = multiprocessing.get_context("spawn")
    held, tried, released = context.Event(), context.Event(), context.Event()
    results: Any = context.Queue()
    child = context.Process(
        target=contend_for_entity_lock, args=(database_url, pid, held, tried, released, results)
    )
    child.start()
    try:
        with service.entity_lock("Portfolio", pid):
            held.set()
            assert tried.wait(WAIT)
        released.set()
        report = results.get(timeout=WAIT)
    finally:
        child.join(WAIT)
        if child.is_alive():  # pragma: no cover - only on a hang
            child.kill()

    assert "error" not in report, report.get("error")
    # timeout=0 tries once; a short timeout ends in lock_timeout (55P03); after release it waits.
    assert report["outcomes"] == [("refused", None), ("refused", "55P03"), ("acquired", None)]
    assert report["lock_timeouts"] == 2
    assert child.exitcode == 0


def test_entity_lock_times_out_cleanly_and_is_free_after_the_block(
    service: ConcurrencyService, engine: Engine
) -> None:
    with service.entity_lock("Portfolio", "p-1"):
        assert held_elsewhere(engine, "p-1")
        for timeout in (0, 0.05):
            with (
                pytest.raises(PessimisticLockException) as caught,
                service.entity_lock("Portfolio", "p-1", timeout=timeout),
            ):
                pytest.fail("the lock is held by the outer block")
            assert (caught.value.entity_type, caught.value.entity_id) == ("Portfolio", "p-1")
            assert caught.value.timeout == timeout
        # Other entities are not affected.
        with service.entity_lock("Portfolio", "p-2", timeout=0):
            pass

    assert not held_elsewhere(engine, "p-1")
    assert service.get_metrics()["lock_timeouts"] == 2


def test_entity_lock_inside_run_counts_a_refusal_once(
    service: ConcurrencyService, engine: Engine
) -> None:
    service_without_lock_retries = ConcurrencyService(engine, retry_lock_not_available=False)

    def work() -> None:
        with service_without_lock_retries.entity_lock("Portfolio", "p-1", timeout=0):
            pass

    with service.entity_lock("Portfolio", "p-1"), pytest.raises(PessimisticLockException):
        service_without_lock_retries.run(work, entity_id="p-1")

    assert service_without_lock_retries.get_metrics()["lock_timeouts"] == 1


def test_entity_lock_joins_the_session_transaction(
    service: ConcurrencyService, store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("joined", Decimal("1"))

    with UnitOfWork(engine) as uow:
        with service.entity_lock("Portfolio", pid, session=uow.session):
            assert held_elsewhere(engine, pid)
        # A transaction-level lock: held until the session's transaction ends.
        assert held_elsewhere(engine, pid)
        uow.portfolios.get(pid).deposit(Decimal("1"))
        uow.commit()
        assert not held_elsewhere(engine, pid)

    assert store.get(pid).cash_balance == Decimal("2")


def test_refused_entity_lock_leaves_the_unit_of_work_usable(
    service: ConcurrencyService, store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("usable", Decimal("100"))
    other = store.create_portfolio("other", Decimal("100"))

    with service.entity_lock("Portfolio", pid), UnitOfWork(engine) as uow:
        uow.portfolios.update_portfolio_atomic(other, {"name": "renamed"}, 1)
        uow.portfolios.get(other).deposit(Decimal("5"))
        for timeout in (0, 0.05):
            with (
                pytest.raises(PessimisticLockException),
                service.entity_lock("Portfolio", pid, timeout=timeout, session=uow.session),
            ):
                pytest.fail("the lock is held elsewhere")
        assert str(uow.session.execute(text("SHOW lock_timeout")).scalar_one()) == "0"
        uow.commit()

    after = store.get(other)
    assert (after.name, after.cash_balance, after.version) == ("renamed", Decimal("105"), 2)


def test_refused_entity_lock_leaves_a_plain_session_usable(
    service: ConcurrencyService, store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("plain", Decimal("100"))
    rename = text("UPDATE portfolios SET name = 'plain-renamed' WHERE id = :pid")

    with service.entity_lock("Portfolio", pid), Session(engine) as session:
        session.execute(rename, {"pid": pid})
        with (
            pytest.raises(PessimisticLockException),
            service.entity_lock("Portfolio", pid, timeout=0.05, session=session),
        ):
            pytest.fail("the lock is held elsewhere")
        session.commit()

    assert store.get(pid).name == "plain-renamed"


def test_entity_lock_without_session_needs_an_engine() -> None:
    with (
        pytest.raises(ConfigurationError),
        ConcurrencyService().entity_lock("Portfolio", "p-1"),
    ):
        pytest.fail("no engine to lock with")
