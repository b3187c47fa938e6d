"""200 asyncio tasks on 10 portfolios, every operation and lock mode at once: invariants hold.

The plan of operations is drawn from a seeded Random; which task wins which
race is up to the event loop and PostgreSQL. Whatever the interleaving,
money is conserved, each portfolio's version equals 1 + the committed units
of work that touched it (one audit event each; a request sent twice at once
under one idempotency key counts once), and no task fails.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from uuid import UUID

import pytest

from portfolio_core import (
    AsyncPortfolioStore,
    ConcurrencyService,
    Portfolio,
    PositionRequest,
    create_async_engine,
)
from portfolio_core.store_call import LOCK_MODES, LockMode

pytestmark = pytest.mark.asyncio

TASKS = 200
PORTFOLIOS = 10
SYMBOLS = ("AAPL", "MSFT", "NVDA")
OPENING_CASH = Decimal("1000000")


class Ledger:
    """What the committed operations should have done, counted as each one returns."""

    def __init__(self) -> None:
        self.external_in = Decimal(0)
        self.external_out = Decimal(0)
        self.commits: Counter[UUID] = Counter()


def _plan(
    store: AsyncPortfolioStore, service: ConcurrencyService, ids: list[UUID], ledger: Ledger
) -> list[Callable[[], Awaitable[None]]]:
    rng = random.Random(20261125)
    plan: list[Callable[[], Awaitable[None]]] = []
    for index in range(TASKS):
        pid = rng.choice(ids)
        lock = LOCK_MODES[index % len(LOCK_MODES)]
        amount = Decimal(rng.randint(1, 10_000)) / 100
        kind = index % 8
        if kind == 0:

            async def deposit(
                pid: UUID = pid, amount: Decimal = amount, lock: LockMode = lock
            ) -> None:
                await store.execute(pid, lambda p: p.deposit(amount), lock=lock)
                ledger.external_in += amount
                ledger.commits[pid] += 1

            plan.append(deposit)
        elif kind == 1:

            async def withdraw(
                pid: UUID = pid, amount: Decimal = amount, lock: LockMode = lock
            ) -> None:
                await store.execute(pid, lambda p: p.withdraw(amount), lock=lock)
                ledger.external_out += amount
                ledger.commits[pid] += 1

            plan.append(withdraw)
        elif kind == 2:
            source, target = rng.sample(ids, 2)

            async def transfer(
                source: UUID = source, target: UUID = target, amount: Decimal = amount
            ) -> None:
                await store.transfer(source, target, amount)
                ledger.commits.update([source, target])

            plan.append(transfer)
        elif kind == 3:
            prices = {symbol: Decimal(rng.randint(5_000, 20_000)) / 100 for symbol in SYMBOLS}

            async def reprice(pid: UUID = pid, prices: dict[str, Decimal] = prices) -> None:
                assert await store.update_all_prices(pid, prices) == len(SYMBOLS)
                ledger.commits[pid] += 1

            plan.append(reprice)
        elif kind == 4:
            chosen = rng.sample(ids, 3)

            async def batch(chosen: list[UUID] = chosen) -> None:
                await store.batch_update({pid: lambda p: p.deposit(Decimal(1)) for pid in chosen})
                ledger.external_in += len(chosen)
                ledger.commits.update(chosen)

            plan.append(batch)
        elif kind == 5:
            request = PositionRequest(rng.choice(SYMBOLS), rng.randint(1, 5), "100.5")

            async def buy(
                pid: UUID = pid, request: PositionRequest = request, lock: LockMode = lock
            ) -> None:
                await store.execute(pid, lambda p: p.open_position(request), lock=lock)
                ledger.commits[pid] += 1

            plan.append(buy)
        elif kind == 6:

            async def deposit_under_entity_lock(pid: UUID = pid, amount: Decimal = amount) -> None:
                async def work() -> None:
                    async with store.unit_of_work() as uow:
                        async with service.async_entity_lock("Portfolio", pid, session=uow.session):
                            portfolio = await uow.portfolios.get(pid)
                            await uow.portfolios.update_portfolio_atomic(
                                pid,
                                {"cash_balance": portfolio.cash_balance + amount},
                                expected_version=portfolio.version,
                            )
                        await uow.commit()

                await service.run_async(work, entity_id=pid)
                ledger.external_in += amount
                ledger.commits[pid] += 1

            plan.append(deposit_under_entity_lock)
        else:

            async def same_key_twice_at_once(
                pid: UUID = pid, amount: Decimal = amount, key: str = f"stress-{index}"
            ) -> None:
                await asyncio.gather(
                    *(
                        store.execute(pid, lambda p: p.deposit(amount), idempotency_key=key)
                        for _ in range(2)
                    )
                )
                ledger.external_in += amount
                ledger.commits[pid] += 1

            plan.append(same_key_twice_at_once)
    return plan


async def _portfolio_with_positions(store: AsyncPortfolioStore, index: int) -> UUID:
    pid = await store.create_portfolio(f"p{index}", OPENING_CASH)

    def open_all(portfolio: Portfolio) -> None:
        for symbol in SYMBOLS:
            portfolio.open_position(PositionRequest(symbol, 10, "100"))

    await store.execute(pid, open_all)
    return pid


@pytest.mark.slow
async def test_200_tasks_on_10_portfolios_conserve_money_and_count_versions(
    database_url: str,
) -> None:
    engine = create_async_engine(database_url, pool_timeout=120)
    service = ConcurrencyService(
        engine, max_retries=200, base_delay=0.001, max_delay=0.02, deadline=None
    )
    store = AsyncPortfolioStore(engine, service)
    try:
        ids = [await _portfolio_with_positions(store, i) for i in range(PORTFOLIOS)]
        ledger = Ledger()

        outcomes = await asyncio.gather(
            *(run() for run in _plan(store, service, ids, ledger)), return_exceptions=True
        )

        assert [o for o in outcomes if o is not None] == []
        snapshots = [await store.get(pid) for pid in ids]
        event_counts = [len(await store.history(pid)) for pid in ids]
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()

    assert all(s.money_invariant_holds() for s in snapshots)
    contributed = sum((s.net_contributions for s in snapshots), Decimal(0))
    assert contributed == PORTFOLIOS * OPENING_CASH + ledger.external_in - ledger.external_out
    held = sum(
        (s.cash_balance + s.total_cost_basis - s.realized_pnl for s in snapshots), Decimal(0)
    )
    assert held == contributed
    # create + opening the positions = version 2, then one bump per committed unit of work.
    assert {s.id: s.version for s in snapshots} == {pid: 2 + ledger.commits[pid] for pid in ids}
    assert event_counts == [s.version for s in snapshots]  # one audit event per version
    assert service.get_metrics()["failed_retries"] == 0
    print("stress metrics:", service.get_metrics())  # how contended this run was, for the log
