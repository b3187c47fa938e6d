"""A coalesced caller's lock timeout bounds its wait, also once a leader took it.

A leader takes only callers whose lock timeout is at least its batch's (the
others stay queued and time out on their own bound, retryable); a taken
caller whose batch gives no outcome within its bound again learns that the
outcome is unknown (its operation may still commit), never a retryable error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Engine, text

from portfolio_core import (
    CommitOutcomeUnknownException,
    PessimisticLockException,
    Portfolio,
    PortfolioStore,
)
from portfolio_core.coalescing import threads
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.units import Seconds
from tests.integration.coalescing_tools import Caller, committed_state, wait_for
from tests.integration.helpers import wait_until_blocked


def _one(portfolio: Portfolio) -> Decimal:
    portfolio.deposit(Decimal("1"))
    return portfolio.cash_balance


def _blocking(inside: threading.Event, go: threading.Event) -> Callable[[Portfolio], Decimal]:
    def operation(portfolio: Portfolio) -> Decimal:
        inside.set()
        go.wait(30)
        return _one(portfolio)

    return operation


def _lock_row(engine: Engine, pid: UUID, release: threading.Event) -> None:
    with engine.connect() as connection, connection.begin():
        connection.execute(text("SELECT 1 FROM portfolios WHERE id = :p FOR UPDATE"), {"p": pid})
        release.wait(60)


def test_a_short_lock_timeout_caller_is_not_taken_by_a_longer_batch(engine: Engine) -> None:
    service = ConcurrencyService(engine, max_retries=0)
    store = PortfolioStore(engine, service, coalesce=True, coalesce_max_batch=2)
    pid = store.create_portfolio("alpha", Decimal("100"))
    inside, go, release = threading.Event(), threading.Event(), threading.Event()
    a = Caller(lambda: store.execute(pid, _blocking(inside, go)))
    a.start()
    assert inside.wait(30)
    f = Caller(lambda: store.execute(pid, _one))  # the default: 30 s
    f.start()
    wait_for(lambda: store.coalescing_queue(pid) == 1, "F queued")
    b = Caller(lambda: store.execute(pid, _one, lock_timeout=30))
    b.start()
    wait_for(lambda: store.coalescing_queue(pid) == 2, "B queued")
    c = Caller(lambda: store.execute(pid, _one, lock_timeout=1))
    c.start()
    wait_for(lambda: store.coalescing_queue(pid) == 3, "C queued")
    holder = threading.Thread(target=_lock_row, args=(engine, pid, release))
    holder.start()
    wait_until_blocked(engine)  # the holder waits behind A's row lock
    go.set()
    a.join(30)
    # F leads (30 s), takes B (30 s) but not C (1 s): C times out in the queue
    # while F's batch still waits for the row.
    c.join(30)
    assert not c.is_alive()
    assert isinstance(c.error, PessimisticLockException)
    release.set()
    for thread in (holder, b, f):
        thread.join(30)
    assert [a.error, f.error, b.error] == [None, None, None]
    assert committed_state(engine, pid) == (4, Decimal("103"), 4)


def test_a_taken_caller_gets_an_unknown_outcome_past_its_bound(engine: Engine) -> None:
    service = ConcurrencyService(engine, max_retries=0)
    store = PortfolioStore(engine, service, coalesce=True)
    pid = store.create_portfolio("alpha", Decimal("100"))
    l_inside, l_go = threading.Event(), threading.Event()
    f_inside, f_go = threading.Event(), threading.Event()
    leader = Caller(lambda: store.execute(pid, _blocking(l_inside, l_go), lock_timeout=1))
    leader.start()
    assert l_inside.wait(30)
    follower = Caller(lambda: store.execute(pid, _blocking(f_inside, f_go), lock_timeout=1))
    follower.start()
    wait_for(lambda: store.coalescing_queue(pid) == 1, "the follower queued")
    l_go.set()
    assert f_inside.wait(30)  # taken: its operation runs in the leader's batch, and hangs
    follower.join(30)
    assert not follower.is_alive()
    assert isinstance(follower.error, CommitOutcomeUnknownException)
    f_go.set()
    leader.join(30)
    assert leader.error is None
    # Unknown, not refused: the batch went on and committed it.
    assert committed_state(engine, pid) == (3, Decimal("102"), 3)


class _Interrupting(threading.Event):
    """The signal of a caller whose wait is interrupted (Ctrl-C) once ``interrupt`` is set."""

    def __init__(self, interrupt: threading.Event) -> None:
        super().__init__()
        self.interrupt = interrupt

    def wait(self, timeout: Seconds | None = None) -> bool:
        if self.interrupt.wait(30):
            raise KeyboardInterrupt
        return super().wait(timeout)


@pytest.mark.parametrize("promoted", [True, False])
def test_an_interrupted_waiter_leaves_no_stuck_queue_behind(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, promoted: bool
) -> None:
    service = ConcurrencyService(engine, max_retries=0)
    store = PortfolioStore(engine, service, coalesce=True, coalesce_max_batch=1)
    pid = store.create_portfolio("alpha", Decimal("100"))
    inside, go, interrupt = threading.Event(), threading.Event(), threading.Event()

    def signal() -> threading.Event:
        name = threading.current_thread().name
        return _Interrupting(interrupt) if name == "interrupted" else threading.Event()

    monkeypatch.setattr(threads, "new_signal", signal)
    leader = Caller(lambda: store.execute(pid, _blocking(inside, go)))
    leader.start()
    assert inside.wait(30)
    waiter = Caller(lambda: store.execute(pid, _one))
    waiter.name = "interrupted"
    waiter.start()
    wait_for(lambda: store.coalescing_queue(pid) == 1, "the waiter queued")
    last = Caller(lambda: store.execute(pid, _one))
    last.start()
    wait_for(lambda: store.coalescing_queue(pid) == 2, "the last caller queued")
    if promoted:  # the leader (a batch of one) hands the lead to the waiter, then it is interrupted
        go.set()
        leader.join(30)
        wait_for(lambda: store.coalescing_queue(pid) == 1, "the waiter promoted")
        interrupt.set()
    else:  # interrupted while queued, then the leader finishes
        interrupt.set()
        wait_for(lambda: store.coalescing_queue(pid) == 1, "the waiter left the queue")
        go.set()
    for thread in (waiter, leader, last):
        thread.join(30)
        assert not thread.is_alive()
    assert isinstance(waiter.error, KeyboardInterrupt)
    assert [leader.error, last.error] == [None, None]
    assert committed_state(engine, pid) == (3, Decimal("102"), 3)
