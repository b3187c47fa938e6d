"""Coalesced batches that fail as a whole: a killed leader, a lost COMMIT reply.

Each caller's key is applied exactly once; a keyless caller whose batch's
COMMIT reply was lost gets CommitOutcomeUnknownException, never a blind retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from portfolio_core import (
    CommitOutcomeUnknownException,
    IdempotencyConflictError,
    Portfolio,
    PortfolioStore,
    create_engine,
)
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.units import Seconds
from tests.integration.coalescing_tools import committed_state, key_count, piled_up, wait_for
from tests.integration.tcp_proxy import CommitLosingProxy

_ROW_LOCK_HOLDERS = text(
    "SELECT DISTINCT pid FROM pg_locks "
    "WHERE locktype = 'relation' AND relation = 'portfolios'::regclass "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND pid <> pg_backend_pid()"
)


def kill_the_row_lock_holder(engine: Engine) -> None:
    """Terminate the one backend holding locks on portfolios; return once it is gone."""
    with engine.connect() as connection:
        (holder,) = connection.execute(_ROW_LOCK_HOLDERS).scalars().all()
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})

        def gone() -> bool:
            alive = connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": holder}
            ).scalar_one()
            connection.rollback()  # a fresh snapshot of pg_stat_activity each time
            return bool(alive == 0)

        wait_for(gone, "the leader's backend exited")


def deposit(amount: str) -> Callable[[Portfolio], Decimal]:
    def operation(portfolio: Portfolio) -> Decimal:
        portfolio.deposit(Decimal(amount))
        return portfolio.cash_balance

    return operation


@pytest.mark.parametrize("kills", [1, 2])
def test_a_leader_killed_mid_batch_fails_the_batch_and_each_key_applies_once(
    engine: Engine, database_url: str, service: ConcurrencyService, kills: int
) -> None:
    """Killed once: the batch's fast way falls back to a fresh unit of work that
    commits it. Killed twice (the fallback too): every caller gets the lost
    connection and its own retry applies its operation."""
    coalescing = PortfolioStore(engine, service, coalesce=True)
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    killer = create_engine(database_url)
    killed: list[int] = []

    def deposit_and_kill_the_leader(portfolio: Portfolio) -> Decimal:
        # Runs in the leader's thread after the first operation was flushed:
        # the leader's backend dies before the batch's COMMIT.
        if len(killed) < kills:
            killed.append(1)
            kill_the_row_lock_holder(killer)
        portfolio.deposit(Decimal("2"))
        return portfolio.cash_balance

    try:
        outcomes = piled_up(
            coalescing,
            engine,
            pid,
            [
                partial(coalescing.execute, pid, deposit("1"), idempotency_key="k1"),
                partial(coalescing.execute, pid, deposit_and_kill_the_leader, idempotency_key="k2"),
                partial(coalescing.execute, pid, deposit("4"), idempotency_key="k3"),
                partial(coalescing.execute, pid, deposit("8")),
            ],
        )
    finally:
        killer.dispose()
    assert len(killed) == kills
    assert [o.error for o in outcomes] == [None] * 4
    assert committed_state(engine, pid) == (5, Decimal("115"), 5)
    assert [key_count(engine, key) for key in ("k1", "k2", "k3")] == [1, 1, 1]
    assert coalescing.metrics()["successful_retries"] == (0 if kills == 1 else 4)


@pytest.fixture
def proxy(database_url: str) -> Iterator[CommitLosingProxy]:
    url = make_url(database_url)
    with CommitLosingProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


def test_a_lost_commit_reply_is_resolved_per_key_and_keyless_callers_learn_it_is_unknown(
    engine: Engine, database_url: str, proxy: CommitLosingProxy, no_sleep: list[Seconds]
) -> None:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    proxied_engine = create_engine(url, pool_size=2, max_overflow=2)
    service = ConcurrencyService(proxied_engine, max_retries=3, sleep=no_sleep.append)
    coalescing = PortfolioStore(proxied_engine, service, coalesce=True)
    try:
        pid = coalescing.create_portfolio("alpha", Decimal("100"))
        outcomes = piled_up(
            coalescing,
            engine,
            pid,
            [
                partial(coalescing.execute, pid, deposit("1"), idempotency_key="k1"),
                partial(coalescing.execute, pid, deposit("2"), idempotency_key="k2"),
                partial(coalescing.execute, pid, deposit("4")),
                partial(coalescing.execute, pid, deposit("8"), idempotency_key="k4"),
            ],
            before_release=proxy.arm,
        )
    finally:
        proxied_engine.dispose()
    assert proxy.commit_lost.is_set()
    # One batch, whose COMMIT reply was lost: the keyed callers get their
    # stored results, the keyless one can only be told the outcome is unknown.
    assert [o.result for o in outcomes] == [Decimal("101"), Decimal("103"), None, Decimal("115")]
    assert isinstance(outcomes[2].error, CommitOutcomeUnknownException)
    assert committed_state(engine, pid) == (5, Decimal("115"), 5)
    assert [key_count(engine, key) for key in ("k1", "k2", "k4")] == [1, 1, 1]


def test_a_key_reused_for_another_request_stays_a_conflict_when_the_batch_commit_is_lost(
    engine: Engine,
    database_url: str,
    proxy: CommitLosingProxy,
    no_sleep: list[Seconds],
    store: PortfolioStore,
) -> None:
    """The conflicting caller left no trace: another caller's lost COMMIT neither
    turns its IdempotencyConflictError into an unknown outcome nor resolves it to
    the result the key stored for the other request."""
    pid = store.create_portfolio("alpha", Decimal("100"))
    assert store.execute(pid, deposit("1"), idempotency_key="K") == Decimal("101")
    with pytest.raises(IdempotencyConflictError):  # uncoalesced: refused
        store.execute(pid, deposit("50"), idempotency_key="K")
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    proxied_engine = create_engine(url, pool_size=2, max_overflow=2)
    service = ConcurrencyService(proxied_engine, max_retries=3, sleep=no_sleep.append)
    coalescing = PortfolioStore(proxied_engine, service, coalesce=True)
    try:
        outcomes = piled_up(
            coalescing,
            engine,
            pid,
            [
                partial(coalescing.execute, pid, deposit("8"), idempotency_key="other"),
                partial(coalescing.execute, pid, deposit("50"), idempotency_key="K"),
            ],
            before_release=proxy.arm,
        )
    finally:
        proxied_engine.dispose()
    assert proxy.commit_lost.is_set()
    assert outcomes[0].result == Decimal("109")
    assert outcomes[1].result is None
    assert isinstance(outcomes[1].error, IdempotencyConflictError)
    assert committed_state(engine, pid) == (3, Decimal("109"), 3)
