"""What a coalesced caller gets back: its own result, as it was right after its operation."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial

import pytest
from sqlalchemy import Engine, inspect

from portfolio_core import Portfolio, PortfolioStore, Position, PositionRequest
from portfolio_core.concurrency import ConcurrencyService
from tests.integration.coalescing_tools import Call, piled_up


def buy(quantity: str) -> Callable[[Portfolio], Position]:
    def operation(portfolio: Portfolio) -> Position:
        return portfolio.open_position(PositionRequest("AAPL", Decimal(quantity), Decimal("10")))

    return operation


def fail(portfolio: Portfolio) -> None:
    raise ValueError("refused")


def whole(portfolio: Portfolio) -> tuple[Portfolio, list[Position]]:
    return portfolio, list(portfolio.positions.values())


@pytest.mark.parametrize("slow_way", [False, True])
def test_each_caller_gets_a_detached_copy_of_its_own_position(
    engine: Engine, service: ConcurrencyService, store: PortfolioStore, slow_way: bool
) -> None:
    coalescing = PortfolioStore(engine, service, coalesce=True)
    pid = store.create_portfolio("alpha", Decimal("1000"))
    alone = store.execute(pid, buy("1"))  # uncoalesced: the state after its own change
    assert (alone.quantity, alone.version) == (Decimal("1"), 1)
    calls: list[Call] = [
        partial(coalescing.execute, pid, buy("1")),
        partial(coalescing.execute, pid, buy("2")),
    ]
    if slow_way:  # an operation that raises sends the batch one change per operation
        calls.insert(1, partial(coalescing.execute, pid, fail))
    calls.append(partial(coalescing.execute, pid, whole))
    outcomes = piled_up(coalescing, engine, pid, calls)

    first, second = outcomes[0].result, outcomes[-2].result
    assert isinstance(first, Position)
    assert isinstance(second, Position)
    assert first is not second
    assert (first.quantity, second.quantity) == (Decimal("2"), Decimal("4"))
    assert inspect(first).detached
    assert inspect(second).detached
    portfolio, held = outcomes[-1].result
    assert inspect(portfolio).detached
    assert portfolio.positions["AAPL"].quantity == Decimal("4")
    assert held[0].quantity == Decimal("4")
    assert held[0] is not second
    assert store.get(pid).positions["AAPL"].quantity == Decimal("4")
    assert (second.version, held[0].version) == (store.get(pid).positions["AAPL"].version,) * 2
