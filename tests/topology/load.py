"""A keyed write load from threads and from asyncio tasks, for failover and crash tests.

Each writer deposits 1 into a portfolio of its own, over and over, each
deposit with an idempotency key of its own. A writer retries a deposit with
the same key while it fails with an error the library classified as
transient (connection lost, COMMIT outcome unknown): that is what a caller
of the library does. Anything else is recorded as a failure. Acknowledged
keys are recorded with the time they were acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID

from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import (
    AsyncPortfolioStore,
    CommitOutcomeUnknownException,
    ConcurrencyService,
    DatabaseConnectionError,
    Portfolio,
    PortfolioStore,
    create_async_engine,
)
from portfolio_core.units import Seconds

TRANSIENT = (CommitOutcomeUnknownException, DatabaseConnectionError)
ONE = Decimal(1)


def _deposit_one(portfolio: Portfolio) -> None:
    portfolio.deposit(ONE)


@dataclass
class Load:
    """What the writers did: acknowledged keys (with times), caller retries, failures."""

    stop: threading.Event = field(default_factory=threading.Event)
    stop_on_error: bool = False
    acknowledged: dict[str, Seconds] = field(default_factory=dict)
    caller_retries: int = 0
    failures: list[str] = field(default_factory=list)
    progress: threading.Condition = field(default_factory=threading.Condition)

    def _record(self, key: str) -> None:
        with self.progress:
            self.acknowledged[key] = time.monotonic()
            self.progress.notify_all()

    def _retried(self) -> None:
        with self.progress:
            self.caller_retries += 1

    def _failed(self, key: str, error: BaseException) -> None:
        with self.progress:
            self.failures.append(f"{key}: {type(error).__name__}: {error}")
            self.progress.notify_all()

    def wait_for(self, count: int, timeout: Seconds = 120) -> None:
        """Block until ``count`` writes in all were acknowledged (or a writer failed)."""
        with self.progress:
            if not self.progress.wait_for(
                lambda: len(self.acknowledged) >= count or bool(self.failures), timeout
            ):
                raise AssertionError(
                    f"only {len(self.acknowledged)} of {count} writes acknowledged"
                )

    def longest_gap(self, prefix: str = "") -> Seconds:
        """The longest time between two consecutive acknowledgements (of keys with ``prefix``)."""
        times = sorted(t for key, t in self.acknowledged.items() if key.startswith(prefix))
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def thread_writer(self, store: PortfolioStore, pid: UUID, name: str) -> Callable[[], None]:
        """A thread body: keyed deposits into ``pid`` until :attr:`stop`."""

        def run() -> None:
            number = 0
            while not self.stop.is_set():
                key = f"{name}-{number}"
                while True:
                    try:
                        store.execute(pid, _deposit_one, lock="wait", idempotency_key=key)
                        break
                    except TRANSIENT as error:
                        if self.stop_on_error:
                            self._failed(key, error)
                            return
                        self._retried()
                    except Exception as error:
                        self._failed(key, error)
                        return
                self._record(key)
                number += 1

        return run

    async def task_writer(self, store: AsyncPortfolioStore, pid: UUID, name: str) -> None:
        """An asyncio task: keyed deposits into ``pid`` until :attr:`stop`."""
        number = 0
        while not self.stop.is_set():
            key = f"{name}-{number}"
            while True:
                try:
                    await store.execute(pid, _deposit_one, lock="wait", idempotency_key=key)
                    break
                except TRANSIENT as error:
                    if self.stop_on_error:
                        self._failed(key, error)
                        return
                    self._retried()
                except Exception as error:
                    self._failed(key, error)
                    return
            self._record(key)
            number += 1


def patient_service(engine: Engine | AsyncEngine) -> ConcurrencyService:
    """Retries that outlast a failover: many short waits, a 60 s deadline."""
    return ConcurrencyService(
        engine, max_retries=200, base_delay=0.005, max_delay=0.05, deadline=60
    )


def run_tasks_in_a_thread(load: Load, url: str, pids: dict[str, UUID]) -> threading.Thread:
    """Start a thread running one event loop with one writer task per ``pids`` entry.

    The async engine is made and disposed of inside that loop (asyncpg's
    connections belong to the loop they were opened in).
    """

    async def main() -> None:
        engine = create_async_engine(url, pool_size=len(pids), max_overflow=len(pids))
        store = AsyncPortfolioStore(engine, patient_service(engine))
        try:
            await asyncio.gather(
                *(load.task_writer(store, pid, name) for name, pid in pids.items())
            )
        finally:
            await engine.dispose()

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    return thread


def under_load(
    store: PortfolioStore,
    libpq_url: str,
    writers: tuple[dict[str, UUID], dict[str, UUID]],
    action: Callable[[], None],
    *,
    before: int,
    after: int,
) -> Load:
    """Keyed writes into each portfolio of ``writers`` (threads', tasks'), ``action`` amid them.

    A thread per portfolio of the first mapping (through ``store``), an asyncio
    task per portfolio of the second (asyncpg on ``libpq_url``). ``action``
    runs once ``before`` writes are acknowledged; the writers stop once
    ``after`` more are. Returns the finished load (failures not checked yet).
    """
    thread_pids, task_pids = writers
    load = Load()
    running = [
        threading.Thread(target=load.thread_writer(store, pid, name))
        for name, pid in thread_pids.items()
    ]
    for writer in running:
        writer.start()
    running.append(run_tasks_in_a_thread(load, libpq_url, task_pids))
    try:
        load.wait_for(before)
        action()
        load.wait_for(len(load.acknowledged) + after)
    finally:
        load.stop.set()
        for writer in running:
            writer.join(timeout=120)
    return load


def assert_applied_exactly_once(
    load: Load, store: PortfolioStore, pids: dict[str, UUID], key_like: str = "%"
) -> None:
    """No writer failed; each acknowledged key (``LIKE key_like``) applied once, none other.

    And each portfolio of ``pids`` holds exactly the deposits acknowledged for it.
    """
    assert load.failures == []
    with store.engine.connect() as connection:
        applied: dict[str, int] = dict(
            connection.execute(
                text(
                    "SELECT idempotency_key, count(*) FROM portfolio_events "
                    "WHERE idempotency_key LIKE :like GROUP BY idempotency_key"
                ),
                {"like": key_like},
            ).all()
        )
    assert applied == dict.fromkeys(load.acknowledged, 1)
    for name, pid in pids.items():
        written = sum(1 for key in load.acknowledged if key.startswith(f"{name}-"))
        assert store.get(pid).total_deposits == written
