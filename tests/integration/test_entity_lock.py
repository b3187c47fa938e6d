"""entity_lock: PostgreSQL advisory locks that exclude other connections, processes and hosts.

The cases shared with async_entity_lock are contract cases, in test_contract_entity_lock.py.
"""

from __future__ import annotations

import multiprocessing
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from portfolio_core import ConfigurationError, PessimisticLockException, PortfolioStore
from portfolio_core.concurrency import ConcurrencyService
from tests.integration.workers import WAIT, contend_for_entity_lock


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
