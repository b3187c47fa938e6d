"""Property: every input to the public entry points is accepted and round-trips, or refused.

Refused means ValidationError (or the typed domain error named) before any
SQL (statements are counted with ``before_cursor_execute``), or, for a
command applied to a loaded portfolio, before any write, and nothing stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event

from portfolio_core import (
    InsufficientFundsError,
    Portfolio,
    PortfolioStore,
    PositionRequest,
    ValidationError,
)

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

HOSTILE_TEXT = st.sampled_from(
    ["", " ", "a\x00b", "a\ud800", "x" * 201, "k" * 100_000, "ＡＢ", "١", "AAPL", "BRK.B", "ok"]
)
TEXTS = st.one_of(st.text(max_size=30), HOSTILE_TEXT)

EXTREME_DECIMALS = st.sampled_from(
    [
        Decimal("1E+999999999999999999"),
        Decimal("0E-999999999999999999"),
        Decimal("-0"),
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("-Infinity"),
        Decimal("1." + "0" * 1000),
        Decimal("9999999999999999.99999999"),
        Decimal("1E-9"),
    ]
)
AMOUNT_TEXT = st.one_of(
    st.from_regex(r"\A[+-]?[0-9]{0,18}(\.[0-9]{0,10})?([eE][+-]?[0-9]{1,3})?\Z"),
    st.sampled_from([" 1 ", "1_000", "١٢", "１２", "1e999999999", "-0", "0x1", "Infinity"]),
)
AMOUNTS: st.SearchStrategy[object] = st.one_of(
    st.decimals(places=8, min_value=-(10**17), max_value=10**17),
    st.decimals(),
    EXTREME_DECIMALS,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([10**5000, True, None, 1.5, math.nan]),
    AMOUNT_TEXT,
)
TIMEOUTS: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-5, max_value=10**8),
    st.sampled_from(["1", True, Decimal(1)]),
)
VERSIONS: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.integers(min_value=-3, max_value=2**32),
    st.sampled_from(["x", True, 1.5, math.nan]),
)


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def _writes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().split(None, 1)[0].upper() != "SELECT"]


def _exact(value: object) -> Decimal:
    return Decimal(value) if isinstance(value, int | str) else value  # type: ignore[return-value]


def _refused_before_sql(statements: list[str], call: Callable[[], object]) -> bool:
    """Run ``call``; True if it was accepted, False if refused before any SQL."""
    statements.clear()
    try:
        call()
    except ValidationError as error:
        message = str(error)
        assert statements == [], statements
        assert len(message) < 400
        return False
    return True


@SETTINGS
@given(name=TEXTS, cash=AMOUNTS)
def test_create_portfolio_round_trips_or_refuses_before_sql(
    store: PortfolioStore, statements: list[str], name: str, cash: Any
) -> None:
    created: list[UUID] = []
    if _refused_before_sql(statements, lambda: created.append(store.create_portfolio(name, cash))):
        portfolio = store.get(created[0])
        assert portfolio.name == name
        assert portfolio.cash_balance == _exact(cash)
        assert portfolio.cash_balance >= 0


@SETTINGS
@given(amount=AMOUNTS, kind=st.sampled_from(["deposit", "withdraw"]))
def test_cash_commands_round_trip_or_change_nothing(
    store: PortfolioStore, statements: list[str], amount: Any, kind: str
) -> None:
    pid = store.create_portfolio("p", 1000)
    statements.clear()
    try:
        store.execute(pid, lambda p: getattr(p, kind)(amount))
    except (ValidationError, InsufficientFundsError):
        assert _writes(statements) == []
        assert store.get(pid).cash_balance == 1000
        assert store.get(pid).version == 1
        return
    sign = 1 if kind == "deposit" else -1
    assert store.get(pid).cash_balance == 1000 + sign * _exact(amount)
    assert "-0" not in str(store.history(pid)[-1].operations)


@SETTINGS
@given(symbol=TEXTS, quantity=AMOUNTS, price=AMOUNTS, new_price=AMOUNTS)
def test_positions_and_prices_round_trip_or_change_nothing(
    store: PortfolioStore,
    statements: list[str],
    symbol: str,
    quantity: Any,
    price: Any,
    new_price: Any,
) -> None:
    pid = store.create_portfolio("p", Decimal("9999999999999999"))
    statements.clear()
    try:
        store.execute(pid, lambda p: p.open_position(PositionRequest(symbol, quantity, price)))
    except (ValidationError, InsufficientFundsError):
        assert _writes(statements) == []
        assert store.get(pid).version == 1
        return
    position = store.get(pid).positions[symbol]
    assert position.quantity == _exact(quantity)
    assert position.entry_price == _exact(price)
    if _refused_before_sql(statements, lambda: store.update_all_prices(pid, {symbol: new_price})):
        assert store.get(pid).positions[symbol].current_price == _exact(new_price)


@SETTINGS
@given(
    key=st.one_of(st.none(), TEXTS),
    lock=st.sampled_from(["optimistic", "nowait", "wait", "bogus"]),
    timeout=TIMEOUTS,
)
def test_keys_and_lock_options_are_accepted_or_refused_before_sql(
    store: PortfolioStore, statements: list[str], key: str | None, lock: Any, timeout: Any
) -> None:
    pid = store.create_portfolio("p", 100)
    versions: list[int] = []

    def deposit_one(portfolio: Portfolio) -> int:
        portfolio.deposit(1)
        return portfolio.version

    def deposit() -> None:
        versions.append(
            store.execute(
                pid,
                deposit_one,
                lock=lock,
                lock_timeout=timeout,
                # One database for every example: a key of its own per example.
                idempotency_key=None if key is None else key + pid.hex,
            )
        )

    if _refused_before_sql(statements, deposit):
        assert store.get(pid).cash_balance == 101
    else:
        assert store.get(pid).cash_balance == 100


@SETTINGS
@given(since=VERSIONS, until=VERSIONS, older_than=st.sampled_from([timedelta.max, timedelta(-1)]))
def test_versions_and_retention_are_accepted_or_refused_before_sql(
    store: PortfolioStore, statements: list[str], since: Any, until: Any, older_than: timedelta
) -> None:
    pid = store.create_portfolio("p", 100)
    store.execute(pid, lambda p: p.deposit(1))
    events: list[object] = []
    if _refused_before_sql(statements, lambda: events.extend(store.history(pid, since))):
        expected = [v for v in (1, 2) if since is None or v > since]
        assert [e.version for e in events] == expected  # type: ignore[attr-defined]
    replayed: list[Portfolio] = []
    if _refused_before_sql(statements, lambda: replayed.append(store.replay(pid, until))):
        assert replayed[0].version <= 2
    assert not _refused_before_sql(statements, lambda: store.purge_idempotency_keys(older_than))


def test_the_statement_counter_sees_the_stores_sql(
    store: PortfolioStore, statements: list[str]
) -> None:
    # Guards the properties above against passing vacuously.
    store.create_portfolio("p", 1)
    assert statements
