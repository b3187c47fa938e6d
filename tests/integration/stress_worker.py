"""One OS process of the exactly-once stress test: 4 threads of keyed operations.

Importable by ``multiprocessing`` (spawn). Each operation has its own
idempotency key and is retried by its caller, with the same key, until it
returns: whatever the killer did to the connections, it must take effect
exactly once. Returns what each operation was, for the parent to check.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy.exc import DBAPIError

from portfolio_core import (
    CommitOutcomeUnknownException,
    ConcurrencyService,
    DatabaseConnectionError,
    DeadlockException,
    OptimisticLockException,
    PessimisticLockException,
    Portfolio,
    PortfolioStore,
    PositionRequest,
    create_engine,
)

THREADS_PER_PROCESS = 4
MAX_ATTEMPTS = 500
"""A caller gives up (and the test fails) only after this many attempts."""
REPEAT_PROBABILITY = 0.15
"""How often an operation that returned is sent again with its key."""

TRANSIENT = (
    CommitOutcomeUnknownException,
    DatabaseConnectionError,
    OptimisticLockException,
    DeadlockException,
    PessimisticLockException,
    DBAPIError,
)


class _ResolutionCounter(logging.Handler):
    """Counts the store's commit-outcome resolutions (committed or not)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: collections.Counter[str] = collections.Counter()
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "commit_outcome_resolved":
            with self._guard:
                self.counts[f"resolved_committed={getattr(record, 'committed', None)}"] += 1


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low * 100, high * 100)).scaleb(-2)


def _operation(
    store: PortfolioStore, rng: random.Random, pids: list[UUID], key: str
) -> tuple[dict[str, Any], Any]:
    """Choose one operation; return its description and a caller that runs it once."""
    kind = rng.choice(("deposit", "withdraw", "trade", "transfer"))
    pid, other = rng.sample(pids, 2)
    amount = _money(rng, 1, 100)
    described: dict[str, Any] = {"key": key, "kind": kind, "portfolio": str(pid)}
    if kind == "transfer":
        described.update(amount=str(amount), to=str(other))
        return described, lambda: store.transfer(pid, other, amount, idempotency_key=key)
    if kind in ("deposit", "withdraw"):
        described["amount"] = str(amount)

        def cash(portfolio: Portfolio) -> Decimal:
            getattr(portfolio, kind)(amount)
            return portfolio.cash_balance

        return described, lambda: store.execute(pid, cash, lock="wait", idempotency_key=key)
    symbol = rng.choice(("AAPL", "MSFT", "BRK.B"))
    quantity = Decimal(rng.randint(2, 10))
    buy, sell = _money(rng, 50, 150), _money(rng, 50, 150)

    def trade(portfolio: Portfolio) -> Decimal:
        portfolio.open_position(PositionRequest(symbol, quantity, buy))
        return portfolio.close_position(symbol, sell, quantity / 2)

    return described, lambda: store.execute(pid, trade, idempotency_key=key)


def run_process(
    url: str, portfolio_ids: list[str], process_index: int, operations_per_thread: int
) -> dict[str, Any]:
    """Run THREADS_PER_PROCESS threads of keyed operations; return outcomes and counters."""
    counter = _ResolutionCounter()
    package_logger = logging.getLogger("portfolio_core")
    package_logger.setLevel(logging.INFO)
    package_logger.addHandler(counter)
    engine = create_engine(url, pool_size=THREADS_PER_PROCESS, max_overflow=THREADS_PER_PROCESS)
    service = ConcurrencyService(
        engine, max_retries=10, base_delay=0.005, max_delay=0.1, deadline=20.0
    )
    store = PortfolioStore(engine, service)
    pids = [UUID(pid) for pid in portfolio_ids]
    outcomes: list[dict[str, Any]] = []
    failures: collections.Counter[str] = collections.Counter()
    guard = threading.Lock()

    def thread_main(thread_index: int) -> None:
        rng = random.Random(f"{process_index}-{thread_index}")
        for number in range(operations_per_thread):
            key = f"p{process_index}-t{thread_index}-op{number}"
            described, call = _operation(store, rng, pids, key)
            described["result"] = until_it_returns(call)
            if rng.random() < REPEAT_PROBABILITY:
                # A client that never heard the answer asks again: same key, same request.
                described["repeated_result"] = until_it_returns(call)
            with guard:
                outcomes.append(described)

    def until_it_returns(call: Callable[[], object]) -> str:
        for _attempt in range(MAX_ATTEMPTS):
            try:
                return str(call())
            except TRANSIENT as error:  # the caller retries, with the same key
                with guard:
                    failures[type(error).__name__] += 1
        return "gave up"

    threads = [
        threading.Thread(target=thread_main, args=(index,)) for index in range(THREADS_PER_PROCESS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    package_logger.removeHandler(counter)
    return {
        "outcomes": outcomes,
        "caller_retries": dict(failures),
        "resolutions": dict(counter.counts),
        "metrics": service.get_metrics(),
    }
