"""Idempotency keys: same key and request -> stored result and no change; else a conflict."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, text

from portfolio_core import (
    IdempotencyConflictError,
    Portfolio,
    PortfolioStore,
    PositionRequest,
    ValidationError,
)


def _state(engine: Engine, pid: UUID) -> tuple[int, Decimal, int]:
    with engine.connect() as connection:
        version, cash = connection.execute(
            text("SELECT version, cash_balance FROM portfolios WHERE id = :id"), {"id": pid}
        ).one()
        events = connection.execute(
            text("SELECT count(*) FROM portfolio_events WHERE portfolio_id = :id"), {"id": pid}
        ).scalar_one()
    return version, cash, events


def _keys(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one())


def _buy(portfolio: Portfolio) -> dict[str, object]:
    position = portfolio.open_position(PositionRequest("AAPL", 10, "150.25"))
    return {"position": position.id, "cash": portfolio.cash_balance, "lots": (1, None, "x")}


def test_repeated_key_with_same_request_returns_stored_result_and_changes_nothing(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("10000"))
    first = store.execute(pid, _buy, idempotency_key="buy-1")
    after_first = _state(engine, pid)

    again = store.execute(pid, _buy, idempotency_key="buy-1")

    assert again == first
    assert isinstance(again["cash"], Decimal)
    assert isinstance(again["position"], UUID)
    assert again["lots"] == (1, None, "x")
    assert _state(engine, pid) == after_first == (2, Decimal("8497.5"), 2)
    assert _keys(engine) == 1


def test_repeated_key_after_later_changes_compares_against_the_state_it_ran_on(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))
    assert store.execute(pid, lambda p: p.withdraw(Decimal("100")), idempotency_key="w") is None
    # The same withdrawal could not run now (no cash left): the key still answers.
    assert store.execute(pid, lambda p: p.withdraw(Decimal("100")), idempotency_key="w") is None
    assert _state(engine, pid) == (2, Decimal("0"), 2)


def test_repeated_key_with_different_request_raises_conflict_and_changes_nothing(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    store.execute(pid, lambda p: p.deposit(Decimal("100")), idempotency_key="k")

    with pytest.raises(IdempotencyConflictError) as raised:
        store.execute(pid, lambda p: p.deposit(Decimal("101")), idempotency_key="k")
    assert raised.value.key == "k"
    with pytest.raises(IdempotencyConflictError):
        store.update_all_prices(pid, {"AAPL": Decimal("1")}, idempotency_key="k")
    other = store.create_portfolio("beta", Decimal("1000"))
    with pytest.raises(IdempotencyConflictError):
        store.execute(other, lambda p: p.deposit(Decimal("100")), idempotency_key="k")
    assert _state(engine, pid) == (2, Decimal("1100"), 2)


def test_same_amount_written_differently_is_the_same_request(store: PortfolioStore) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    store.execute(pid, lambda p: p.deposit(Decimal("100")), idempotency_key="k")
    store.execute(pid, lambda p: p.deposit("100.000"), idempotency_key="k")
    assert store.get(pid).cash_balance == Decimal("1100")


def test_keyed_transfer_moves_money_once(store: PortfolioStore, engine: Engine) -> None:
    source = store.create_portfolio("source", Decimal("1000"))
    target = store.create_portfolio("target", Decimal("0"))

    store.transfer(source, target, Decimal("300"), idempotency_key="t")
    store.transfer(source, target, Decimal("300"), idempotency_key="t")
    with pytest.raises(IdempotencyConflictError):
        store.transfer(target, source, Decimal("300"), idempotency_key="t")

    assert _state(engine, source) == (2, Decimal("700"), 2)
    assert _state(engine, target) == (2, Decimal("300"), 2)
    legs = [event.operations[0].kind for pid in (source, target) for event in store.history(pid, 1)]
    assert legs == ["transfer_out", "transfer_in"]
    assert {
        event.idempotency_key for pid in (source, target) for event in store.history(pid, 1)
    } == {"t"}


def test_keyed_update_all_prices_returns_stored_count(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("10000"))
    store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 1, "100")))

    assert (
        store.update_all_prices(pid, {"AAPL": Decimal("110"), "MSFT": 5}, idempotency_key="p") == 1
    )
    assert (
        store.update_all_prices(pid, {"AAPL": Decimal("110"), "MSFT": 5}, idempotency_key="p") == 1
    )

    assert _state(engine, pid)[::2] == (3, 3)


def test_result_that_is_not_json_able_is_rejected_before_anything_commits(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("10000"))

    with pytest.raises(ValidationError) as raised:
        store.execute(
            pid, lambda p: p.open_position(PositionRequest("AAPL", 1, "100")), idempotency_key="x"
        )

    assert raised.value.field == "result"
    assert _state(engine, pid) == (1, Decimal("10000"), 1)
    assert _keys(engine) == 0


@pytest.mark.parametrize("bad_key", ["", "k" * 201, 42])
def test_invalid_keys_are_rejected(store: PortfolioStore, bad_key: object) -> None:
    with pytest.raises(ValidationError):
        store.execute(uuid4(), lambda p: None, idempotency_key=bad_key)  # type: ignore[arg-type]


def test_concurrent_requests_with_one_key_apply_it_once(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    entered, go = threading.Event(), threading.Event()
    calls: list[int] = []
    results: list[object] = []

    def slow_deposit(portfolio: Portfolio) -> Decimal:
        calls.append(1)
        if len(calls) == 1:  # the first attempt waits until the other request committed
            entered.set()
            assert go.wait(timeout=30)
        portfolio.deposit(Decimal("5"))
        return Decimal("5")

    def first() -> None:
        results.append(store.execute(pid, slow_deposit, idempotency_key="same"))

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(timeout=30)
    results.append(store.execute(pid, slow_deposit, idempotency_key="same"))
    go.set()
    thread.join(timeout=60)

    assert results == [Decimal("5"), Decimal("5")]
    assert _state(engine, pid) == (2, Decimal("1005"), 2)


def test_purge_removes_only_keys_older_than_the_retention(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    store.execute(pid, lambda p: p.deposit(Decimal("1")), idempotency_key="old")
    store.execute(pid, lambda p: p.deposit(Decimal("1")), idempotency_key="new")
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - interval '2 days' "
                "WHERE key = 'old'"
            )
        )

    assert store.purge_idempotency_keys(timedelta(days=1)) == 1
    assert store.purge_idempotency_keys(timedelta(days=1)) == 0
    with pytest.raises(ValidationError):
        store.purge_idempotency_keys(timedelta(days=-1))
    # The purged key is free again: it applies anew.
    store.execute(pid, lambda p: p.deposit(Decimal("1")), idempotency_key="old")
    assert store.get(pid).cash_balance == Decimal("1003")
