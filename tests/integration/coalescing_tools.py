"""Coalescing test tools: callers piled up behind a leader blocked on a row lock.

A raw connection holds the portfolio's row lock; the first caller becomes the
leader and blocks on FOR UPDATE (seen in pg_locks), then each further caller
is started only once the one before it is seen in the store's queue, so the
arrival order is the list's order. Releasing the lock lets the leader take
them all into one batch. No sleeps decide anything: every wait is for an
observable state, bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, text

from portfolio_core import PortfolioStore
from tests.integration.helpers import row_locked, wait_until_blocked

_POLLS = 2000
_PAUSE = 0.01


class Caller(threading.Thread):
    """A thread making one call: its result or the error it raised, kept for the test."""

    def __init__(self, run: Callable[[], Any], name: str | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.run_call = run
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.run_call()
        except BaseException as error:
            self.error = error


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Return once ``condition()`` holds (bounded polls, paused by an Event nobody sets)."""
    pause = threading.Event()
    for _ in range(_POLLS):
        if condition():
            return
        pause.wait(_PAUSE)
    raise AssertionError(f"never reached: {what}")


@dataclass
class Outcome:
    """What one piled-up caller got: its result or its exception."""

    result: Any = None
    error: BaseException | None = None


Call = Callable[[], Any]


def piled_up(
    store: PortfolioStore,
    engine: Engine,
    portfolio_id: UUID,
    calls: list[Call],
    before_release: Callable[[], None] = lambda: None,
) -> list[Outcome]:
    """Run each call in a thread of its own, queued in list order, then release the row."""
    outcomes = [Outcome() for _ in calls]

    def runner(index: int) -> None:
        try:
            outcomes[index].result = calls[index]()
        except BaseException as error:
            outcomes[index].error = error

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(calls))]
    with row_locked(engine, portfolio_id):
        threads[0].start()
        wait_until_blocked(engine)
        for index, thread in enumerate(threads[1:], start=1):
            thread.start()
            wait_for(partial(_queued, store, portfolio_id, index), f"caller {index} queued")
        before_release()
    for thread in threads:
        thread.join(timeout=60)
        if thread.is_alive():
            raise AssertionError("a coalesced caller hung")
    return outcomes


def _queued(store: PortfolioStore, portfolio_id: UUID, count: int) -> bool:
    return store.coalescing_queue(portfolio_id) == count


def committed_state(engine: Engine, portfolio_id: UUID) -> tuple[int, Decimal, int]:
    """(version, cash_balance, number of events), on a direct connection."""
    with engine.connect() as connection:
        version, cash = connection.execute(
            text("SELECT version, cash_balance FROM portfolios WHERE id = :id"),
            {"id": portfolio_id},
        ).one()
        events = connection.execute(
            text("SELECT count(*) FROM portfolio_events WHERE portfolio_id = :id"),
            {"id": portfolio_id},
        ).scalar_one()
    return int(version), Decimal(cash), int(events)


def event_rows(engine: Engine, portfolio_id: UUID) -> list[tuple[int, str | None, Any]]:
    """(version, idempotency_key, occurred_at) of every event, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT version, idempotency_key, occurred_at FROM portfolio_events "
                "WHERE portfolio_id = :id ORDER BY version"
            ),
            {"id": portfolio_id},
        ).all()
    return [(int(row[0]), row[1], row[2]) for row in rows]


def key_count(engine: Engine, key: str) -> int:
    """How many events carry ``key`` (exactly-once: 1)."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM portfolio_events WHERE idempotency_key = :k"),
                {"k": key},
            ).scalar_one()
        )
