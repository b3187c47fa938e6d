"""Both stores take a portfolio id as a UUID or its string (typed ``UUID | str``).

mypy --strict checks these calls too: a ``str`` id is no longer a type error.
A string that is not a UUID is refused with ValidationError before any SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, event

from portfolio_core import AsyncPortfolioStore, PortfolioStore, ValidationError

NOT_A_UUID = "portfolio-" + "x" * 300


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL the engine sends, from now on."""
    sent: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *rest: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def test_the_sync_store_takes_string_ids(store: PortfolioStore) -> None:
    pid = str(store.create_portfolio("alpha", Decimal("100")))
    other = str(store.create_portfolio("beta", Decimal("0")))

    store.execute(pid, lambda p: p.deposit(Decimal("5")))
    store.transfer(pid, other, Decimal("10"))
    assert store.update_all_prices(pid, {}) == 0  # nothing held: no change, no event

    assert store.get(pid).cash_balance == Decimal("95")
    assert store.get(other).cash_balance == Decimal("10")
    assert [event.version for event in store.history(pid)] == [1, 2, 3]
    assert store.replay(pid, version=2).cash_balance == Decimal("105")


def test_a_string_that_is_no_uuid_is_refused_before_any_sql(
    store: PortfolioStore, statements: list[str]
) -> None:
    for call in (
        lambda: store.get(NOT_A_UUID),
        lambda: store.execute(NOT_A_UUID, lambda p: p.deposit(Decimal("1"))),
        lambda: store.history(NOT_A_UUID),
    ):
        with pytest.raises(ValidationError, match="is not a UUID") as caught:
            call()
        assert "portfolio-xxx" in str(caught.value)
        assert NOT_A_UUID not in str(caught.value)  # quoted truncated

    assert statements == []


@pytest.mark.asyncio
async def test_the_async_store_takes_string_ids(async_store: AsyncPortfolioStore) -> None:
    pid = str(await async_store.create_portfolio("alpha", Decimal("100")))

    await async_store.execute(pid, lambda p: p.deposit(Decimal("5")), lock="wait")

    assert (await async_store.get(pid)).cash_balance == Decimal("105")
    assert len(await async_store.history(pid)) == 2
    with pytest.raises(ValidationError, match="is not a UUID"):
        await async_store.get(NOT_A_UUID)
