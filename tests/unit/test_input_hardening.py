"""Hostile inputs are refused with ValidationError (short message), never a raw Python error."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from portfolio_core.domain import arguments, money
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import SHOWN_VALUE_LENGTH, ValidationError
from portfolio_core.persistence import idempotency

HUGE_EXPONENT = Decimal("1E+999999999999999999")
TINY_ZERO = Decimal("0E-999999999999999999")


@pytest.mark.parametrize(
    "value",
    [
        HUGE_EXPONENT,
        Decimal("-1E+999999999999999999"),
        "1" * 10**7,
        "1E+999999999999999999",
        10**5000,
        -(10**5000),
        Decimal("1" * 100_000),
    ],
    ids=[
        "1E+huge",
        "-1E+huge",
        "10^7-digit str",
        "1E+huge str",
        "10**5000",
        "-10**5000",
        "1e5 digits",
    ],
)
def test_decimal_extremes_are_refused_with_a_short_message(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        money.to_decimal(value, "amount")
    assert len(str(caught.value)) < SHOWN_VALUE_LENGTH + 120


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (TINY_ZERO, "0E-8"),
        (Decimal("0E+999999999999999999"), "0"),
        ("1." + "0" * 10**6, None),
        (Decimal("1." + "0" * 10**6), "1.00000000"),
        (Decimal("1.000000000"), "1.00000000"),
        (Decimal("1E+2"), "100"),
        (Decimal("-0"), "0"),
        ("-0", "0"),
        (Decimal("-0.00"), "0.00"),
        ("-0E-12", "0E-8"),
    ],
)
def test_extreme_exponents_are_normalised_or_refused(value: object, stored: str | None) -> None:
    if stored is None:
        with pytest.raises(ValidationError):
            money.to_decimal(value, "amount")
        return
    result = money.to_decimal(value, "amount")
    assert str(result) == stored
    assert not result.is_signed()
    exponent = result.as_tuple().exponent
    assert isinstance(exponent, int)
    assert -money.SCALE <= exponent <= 0


@pytest.mark.parametrize(
    "text",
    [" 1 ", "1 ", "\t1", "1_000", "١٢", "１２", "1e", "+", ".", "0x10", "1,5", "Infinity", "inf"],
)
def test_only_plain_ascii_decimal_literals_are_amounts(text: str) -> None:
    with pytest.raises(ValidationError):
        money.to_decimal(text, "amount")


@pytest.mark.parametrize("text", ["1", "-1", "+1", "1.5", ".5", "5.", "1E+2", "1e-8", "0.00000001"])
def test_plain_literals_are_accepted(text: str) -> None:
    assert money.to_decimal(text, "amount") == Decimal(text)


def test_a_negative_zero_deposit_is_recorded_as_zero() -> None:
    portfolio = Portfolio("p", 10)
    with pytest.raises(ValidationError):
        portfolio.deposit(Decimal("-0"))  # a deposit must be > 0
    assert not money.non_negative(Decimal("-0"), "price").is_signed()


def test_a_10mb_value_is_not_echoed_whole() -> None:
    with pytest.raises(ValidationError) as caught:
        idempotency.validate_key("k" * 10_000_000)
    assert len(str(caught.value)) < SHOWN_VALUE_LENGTH + 120


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
def test_nul_and_lone_surrogates_are_refused_in_names_keys_symbols(bad: str) -> None:
    with pytest.raises(ValidationError):
        money.validate_name(bad)
    with pytest.raises(ValidationError):
        idempotency.validate_key(bad)
    with pytest.raises(ValidationError):
        money.validate_symbol(bad)
    with pytest.raises(ValidationError):
        idempotency.encode_result({"k": bad})
    with pytest.raises(ValidationError):
        idempotency.encode_result({bad: 1})


@pytest.mark.parametrize(
    "value",
    [math.inf, -math.inf, math.nan, -1, 0, 0.0, 3e6, 1e10, "1", True, Decimal("1")],
)
def test_lock_timeout_must_be_finite_positive_and_within_postgresql(value: object) -> None:
    with pytest.raises(ValidationError):
        arguments.lock_timeout(value)


@pytest.mark.parametrize("value", [math.inf, math.nan, -1, -0.5, 3e6, "1", True])
def test_entity_lock_timeout_is_checked_too(value: object) -> None:
    with pytest.raises(ValidationError):
        arguments.lock_wait(value)


def test_good_timeouts_pass() -> None:
    assert arguments.lock_timeout(None) is None
    assert arguments.lock_timeout(1.5) == 1.5
    assert arguments.lock_timeout(arguments.MAX_LOCK_TIMEOUT) == arguments.MAX_LOCK_TIMEOUT
    assert arguments.lock_wait(0) == 0


@pytest.mark.parametrize("value", ["x", True, 1.5, math.nan, -1, 2**31, Decimal(1)])
def test_versions_must_be_ints_in_the_column_range(value: object) -> None:
    with pytest.raises(ValidationError):
        arguments.version(value, "since_version")


def test_a_replayed_version_starts_at_one() -> None:
    assert arguments.version(0, "since_version") == 0
    with pytest.raises(ValidationError):
        arguments.version(0, "version", minimum=1)


@pytest.mark.parametrize("value", [timedelta.max, timedelta(days=-1), 5, None])
def test_retention_is_a_bounded_timedelta(value: object) -> None:
    with pytest.raises(ValidationError):
        arguments.retention(value)


def test_one_portfolio_named_twice_in_a_batch_is_refused() -> None:
    pid = uuid4()
    with pytest.raises(ValidationError):
        arguments.distinct_portfolio_ids([pid, str(pid)])


def test_deep_and_huge_results_are_refused() -> None:
    deep: list[object] = []
    for _ in range(5_000):
        deep = [deep]
    with pytest.raises(ValidationError):
        idempotency.encode_result(deep)
    with pytest.raises(ValidationError):
        idempotency.encode_result(list(range(10**6)))
    assert idempotency.encode_result([[1, "a"], {"k": (Decimal("1.5"),)}]) is not None
