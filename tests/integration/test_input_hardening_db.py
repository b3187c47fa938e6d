"""Bad arguments to the stores are refused with ValidationError before any SQL, nothing stored."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core import (
    AsyncPortfolioStore,
    Portfolio,
    PortfolioStore,
    PositionRequest,
    ValidationError,
)
from portfolio_core.concurrency import ConcurrencyService

BAD_TIMEOUTS = [math.inf, math.nan, -1, 3e6, 1e10, "1", True]


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement the engine sends, recorded from the moment it is requested."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def _refused_before_sql(statements: list[str], call: Callable[[], object]) -> None:
    statements.clear()
    with pytest.raises(ValidationError) as caught:
        call()
    assert statements == []
    assert len(str(caught.value)) < 300


def _events(engine: Engine, pid: UUID) -> list[str]:
    with engine.connect() as connection:
        return [
            str(row[0])
            for row in connection.execute(
                text(
                    "SELECT operations::text FROM portfolio_events "
                    "WHERE portfolio_id = :id ORDER BY version"
                ),
                {"id": pid},
            )
        ]


@pytest.mark.parametrize("lock", ["optimistic", "nowait", "wait"])
@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=repr)
def test_a_bad_lock_timeout_is_refused_in_every_mode(
    store: PortfolioStore, statements: list[str], lock: Any, timeout: object
) -> None:
    pid = store.create_portfolio("p", 100)
    _refused_before_sql(
        statements,
        lambda: store.execute(pid, lambda p: p.deposit(1), lock=lock, lock_timeout=timeout),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -1, 3e6, "1"], ids=repr)
def test_a_bad_entity_lock_timeout_is_refused(
    service: ConcurrencyService, statements: list[str], timeout: object
) -> None:
    def lock() -> None:
        with service.entity_lock("Portfolio", 1, timeout=timeout):  # type: ignore[arg-type]
            pass

    _refused_before_sql(statements, lock)


@pytest.mark.parametrize("version", ["x", True, 1.5, math.nan, -1, 2**31], ids=repr)
def test_history_and_replay_refuse_a_version_that_is_not_an_int(
    store: PortfolioStore, statements: list[str], version: object
) -> None:
    pid = store.create_portfolio("p", 100)
    _refused_before_sql(statements, lambda: store.history(pid, since_version=version))  # type: ignore[arg-type]
    _refused_before_sql(statements, lambda: store.replay(pid, version=version))  # type: ignore[arg-type]


def test_purge_refuses_an_unrepresentable_retention(
    store: PortfolioStore, statements: list[str]
) -> None:
    _refused_before_sql(statements, lambda: store.purge_idempotency_keys(timedelta.max))


def test_a_batch_naming_one_portfolio_twice_is_refused(
    store: PortfolioStore, engine: Engine, statements: list[str]
) -> None:
    pid = store.create_portfolio("p", 100)
    updates: dict[Any, Callable[[Portfolio], None]] = {
        pid: lambda p: p.deposit(1),
        str(pid): lambda p: p.deposit(2),
    }
    _refused_before_sql(statements, lambda: store.batch_update(updates))
    assert store.get(pid).cash_balance == 100


def test_update_all_prices_refuses_none(store: PortfolioStore, statements: list[str]) -> None:
    pid = store.create_portfolio("p", 100)
    _refused_before_sql(statements, lambda: store.update_all_prices(pid, None))  # type: ignore[arg-type]
    _refused_before_sql(
        statements,
        lambda: store.update_all_prices(pid, None, idempotency_key="k"),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"], ids=["NUL", "surrogate"])
def test_nul_and_surrogates_are_refused_before_sql(
    store: PortfolioStore, engine: Engine, statements: list[str], bad: str
) -> None:
    _refused_before_sql(statements, lambda: store.create_portfolio(bad, 1))
    pid = store.create_portfolio("p", 100)
    _refused_before_sql(
        statements, lambda: store.execute(pid, lambda p: p.deposit(1), idempotency_key=bad)
    )

    def deposit_returning(portfolio: Portfolio) -> str:
        portfolio.deposit(1)
        return bad

    with pytest.raises(ValidationError):
        store.execute(pid, deposit_returning, idempotency_key="k")
    assert store.get(pid).cash_balance == 100
    assert len(_events(engine, pid)) == 1


@pytest.mark.parametrize(
    "price", [Decimal("0E-999999999999999999"), Decimal("1." + "0" * 10**6), Decimal("-0")]
)
def test_extreme_but_exact_prices_are_stored_normalised(
    store: PortfolioStore, engine: Engine, price: Decimal
) -> None:
    pid = store.create_portfolio("p", 1000)
    store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 1, "10")))
    store.execute(pid, lambda p: p.update_position_price("AAPL", price))
    assert store.get(pid).positions["AAPL"].current_price == price
    last = _events(engine, pid)[-1]
    assert len(last) < 200
    assert "-0" not in last


def test_a_megabyte_amount_string_is_refused(store: PortfolioStore, engine: Engine) -> None:
    pid = store.create_portfolio("p", 1000)
    with pytest.raises(ValidationError):
        store.execute(pid, lambda p: p.deposit("1." + "0" * 10**6))
    assert len(_events(engine, pid)) == 1


def test_deep_or_huge_keyed_results_are_refused_and_nothing_is_stored(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("p", 100)
    deep: list[object] = []
    for _ in range(5_000):
        deep = [deep]
    for result in (deep, list(range(10**6))):

        def deposit_returning(portfolio: Portfolio, result: object = result) -> object:
            portfolio.deposit(1)
            return result

        with pytest.raises(ValidationError):
            store.execute(pid, deposit_returning, idempotency_key="k")
    assert store.get(pid).cash_balance == 100


@pytest.mark.asyncio
async def test_the_async_store_refuses_the_same_inputs(async_engine: AsyncEngine) -> None:
    store = AsyncPortfolioStore(async_engine)
    with pytest.raises(ValidationError):
        await store.create_portfolio("a\ud800", 1)
    pid = await store.create_portfolio("p", 100)
    with pytest.raises(ValidationError):
        await store.execute(pid, lambda p: p.deposit(1), lock_timeout=math.nan)
    with pytest.raises(ValidationError):
        await store.history(pid, since_version=math.nan)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await store.execute(pid, lambda p: p.deposit(1), idempotency_key="k\x00")
    assert (await store.get(pid)).cash_balance == 100
