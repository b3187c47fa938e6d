"""Worker threads and the OS processes that run them.

``child_main`` is the entry point of each spawned process: it builds its own
engine and PortfolioStore (engines are never shared across processes), runs
its share of the worker threads, reports progress through the queue every
quarter second, and sends its merged :class:`WorkerStats` when done.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Engine, event

from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.demo.config import DemoConfig
from portfolio_core.demo.stats import CONFLICT_EVENTS, EventCounter, WorkerStats
from portfolio_core.demo.trades import PlannedTrade, Planner, run_trade, would_be
from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    DatabaseConnectionError,
    DeadlockException,
    InsufficientFundsError,
    OptimisticLockException,
    PessimisticLockException,
    PositionNotFoundError,
)
from portfolio_core.persistence.engine import create_engine
from portfolio_core.store import PortfolioStore
from portfolio_core.units import Seconds

TRADE_DEADLINE: Final[Seconds] = 60.0
"""How long a worker keeps re-running one trade."""
RECONNECT_DEADLINE: Final[Seconds] = 30.0
"""How long a new connection waits for the server."""
PROGRESS_EVERY: Final[Seconds] = 0.25
ORPHANED: Final = 70
"""Exit status of a demo process whose parent died before telling it to stop."""

DOMAIN_OUTCOMES: Final = (InsufficientFundsError, PositionNotFoundError)
"""Refusals by the domain: a correct, final answer (nothing was changed)."""

POLICY_EXHAUSTED: Final = (
    OptimisticLockException,
    DeadlockException,
    PessimisticLockException,
    DatabaseConnectionError,
)
"""The store gave up within its retry policy: nothing was committed, run it again."""


def demo_engine(url: str, application_name: str, pool: int, waits: list[int]) -> Engine:
    """An engine whose new connections wait (bounded) for a restarting server.

    A refused connection carries no SQLSTATE and is not a lost one, so the
    library (rightly) does not retry it; the demo's server restarts on purpose,
    so opening a connection here retries for up to RECONNECT_DEADLINE seconds.
    ``waits[0]`` counts the refused attempts.
    """
    engine = create_engine(
        url,
        pool_size=pool,
        max_overflow=pool,
        connect_args={"application_name": application_name, "connect_timeout": 5},
    )

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        deadline = time.monotonic() + RECONNECT_DEADLINE
        while True:
            try:
                return dialect.loaded_dbapi.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError:
                if time.monotonic() > deadline:
                    raise
                waits[0] += 1
                time.sleep(0.05)

    return engine


def demo_service(engine: Engine) -> ConcurrencyService:
    """The demo's retry policy: quick backoff, bounded by attempts and a deadline."""
    return ConcurrencyService(engine, max_retries=10, base_delay=0.002, max_delay=0.1, deadline=15)


@dataclass
class _Shared:
    config: DemoConfig
    store: PortfolioStore
    portfolio_ids: list[UUID]
    keyed: bool
    stop: Any  # multiprocessing.Event
    claimed: Any  # multiprocessing.Value('q') or None
    restarted: Any  # multiprocessing.Event, set once the server has been restarted
    restart_gate: int | None  # operations past this number wait for the restart


class Worker(threading.Thread):
    """One worker thread: draw a trade, run it until it settles, repeat."""

    def __init__(self, shared: _Shared, process_index: int, thread_index: int) -> None:
        super().__init__(name=f"demo-worker-{process_index}-{thread_index}", daemon=True)
        self.shared = shared
        self.stats = WorkerStats()
        # A string seed is hashed deterministically: same --seed, same plan per worker.
        self.rng = random.Random(f"{shared.config.seed}:{process_index}:{thread_index}")
        self.planner = Planner(
            self.rng, shared.portfolio_ids, shared.config.hot_share, keyed=shared.keyed
        )

    def _claim(self) -> bool:
        claimed, limit = self.shared.claimed, self.shared.config.ops
        if claimed is None:
            return True
        with claimed.get_lock():
            if claimed.value >= limit:
                return False
            claimed.value += 1
            number = claimed.value
        gate = self.shared.restart_gate
        if gate is not None and number > gate:
            # A short --ops run could end before the fault injector restarts the
            # server: the second part of the run waits (bounded) for the restart.
            self.shared.restarted.wait(30)
        return True

    def run(self) -> None:
        """Work until the stop event is set or the operation budget is spent."""
        while not self.shared.stop.is_set() and self._claim():
            trade = self.planner.next()
            started = time.perf_counter()
            self.settle(trade)
            self.stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.stats.done += 1

    def settle(self, trade: PlannedTrade) -> None:
        """Run ``trade`` until it commits, is refused by the domain, or its outcome is unknown."""
        stats, ledger = self.stats, self.stats.ledger
        deadline = time.monotonic() + TRADE_DEADLINE
        while True:
            stats.calls += 1
            try:
                effect = run_trade(
                    self.shared.store, trade, lock_timeout=self.shared.config.lock_timeout
                )
            except DOMAIN_OUTCOMES as refusal:
                stats.rejected[type(refusal).__name__] += 1
                return
            except CommitOutcomeUnknownException:
                if trade.key is not None and time.monotonic() < deadline:
                    # Same key again: the store applies it only if it never committed.
                    stats.resolved_by_key += 1
                    continue
                # No key: nobody can tell from here; the database will (see ledger).
                stats.unknown[trade.kind] += 1
                ledger.outcome_unknown(would_be(trade))
                return
            except POLICY_EXHAUSTED as exhausted:
                stats.reruns[type(exhausted).__name__] += 1
                if time.monotonic() > deadline:
                    stats.abandoned += 1
                    return
                time.sleep(self.rng.uniform(0.005, 0.05))
                continue
            except Exception as error:  # reported, and its outcome treated as unknown
                stats.unexpected.append(f"{trade.kind}: {type(error).__name__}: {error}"[:300])
                ledger.outcome_unknown(would_be(trade))
                return
            stats.committed[effect.kind] += 1
            stats.committed_total += 1
            if trade.kind not in ("transfer", "reprice_all"):
                stats.committed_by_lock[trade.lock] += 1
            if trade.key is not None:
                stats.keys[trade.key] = effect.kind
            ledger.committed(effect)
            return


def _progress(workers: Sequence[Worker], counter: EventCounter) -> dict[str, int]:
    events, _causes = counter.snapshot()
    return {
        "done": sum(w.stats.done for w in workers),
        "committed": sum(w.stats.committed_total for w in workers),
        "conflicts": sum(events[name] for name in CONFLICT_EVENTS),
        "retries": events["retrying"] + sum(sum(w.stats.reruns.values()) for w in workers),
    }


def _exit_with_parent() -> None:
    """End this process as soon as its parent is gone (killed, crashed).

    Nobody would read this process's results or ever set ``stop``; its open
    transactions are rolled back by the server when its connections drop.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns when the parent's end of the sentinel pipe closes
        os._exit(ORPHANED)


def child_main(
    index: int,
    config: DemoConfig,
    url: str,
    application_name: str,
    portfolio_ids: list[str],
    keyed: bool,
    stop: Any,
    claimed: Any,
    restarted: Any,
    restart_gate: int | None,
    queue: Any,
) -> None:
    """Entry point of one demo process: run its worker threads, report through ``queue``.

    Messages: ("progress", index, counts), then ("done", index, WorkerStats)
    or ("error", index, traceback text).
    """
    # The parent handles Ctrl-C for the whole run and tells us through ``stop``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="demo-parent-watch", daemon=True).start()
    try:
        counter = EventCounter()
        counter.install()
        threads = config.threads_of(index)
        waits = [0]
        engine = demo_engine(url, application_name, threads + 1, waits)
        store = PortfolioStore(engine, demo_service(engine), coalesce=config.coalesce)
        shared = _Shared(
            config,
            store,
            [UUID(p) for p in portfolio_ids],
            keyed,
            stop,
            claimed,
            restarted,
            restart_gate,
        )
        workers = [Worker(shared, index, t) for t in range(threads)]
        for worker in workers:
            worker.start()
        while any(w.is_alive() for w in workers):
            time.sleep(PROGRESS_EVERY)
            queue.put(("progress", index, _progress(workers, counter)))
        total = WorkerStats()
        for worker in workers:
            total.merge(worker.stats)
        total.events, total.retry_causes = counter.snapshot()
        total.metrics.update(store.metrics())
        total.reconnect_waits = waits[0]
        engine.dispose()
        queue.put(("done", index, total))
    except BaseException:
        queue.put(("error", index, traceback.format_exc()))
