"""Operation records, replay from events, and the idempotency encodings (no database)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from portfolio_core import (
    InsufficientFundsError,
    Portfolio,
    PortfolioEvent,
    PortfolioOperation,
    PositionRequest,
    ValidationError,
)
from portfolio_core.domain.money import FixedPoint
from portfolio_core.domain.replay import reapply_operation, replay
from portfolio_core.persistence.idempotency import (
    decode_result,
    encode_result,
    fingerprint,
    operations_request,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_commands_record_what_they_did_in_order() -> None:
    portfolio = Portfolio("alpha", "1000")
    portfolio.deposit("10.50")
    portfolio.open_position(PositionRequest("AAPL", 2, "100"))
    portfolio.update_all_prices({"AAPL": "101", "MSFT": "5"})
    portfolio.close_position("AAPL", "102")

    assert [(op.kind, dict(op.arguments)) for op in portfolio.pending_operations()] == [
        ("created", {"name": "alpha", "cash_balance": Decimal("1000")}),
        ("deposit", {"amount": Decimal("10.50")}),
        ("open_position", {"symbol": "AAPL", "quantity": 2, "entry_price": 100}),
        ("update_all_prices", {"prices": {"AAPL": Decimal("101")}}),
        ("close_position", {"symbol": "AAPL", "exit_price": 102, "quantity": None}),
    ]


def test_failed_command_records_nothing() -> None:
    portfolio = Portfolio("alpha", "10")
    before = portfolio.pending_operations()

    with pytest.raises(InsufficientFundsError):
        portfolio.withdraw("11")
    assert portfolio.update_all_prices({"MSFT": "1"}) == 0

    assert portfolio.pending_operations() == before


def test_operation_json_round_trip_keeps_decimals_exact() -> None:
    operation = PortfolioOperation(
        "update_all_prices", {"prices": {"AAPL": Decimal("1.50000000"), "X": Decimal("1E+2")}}
    )

    data = operation.to_json()

    assert data == {
        "kind": "update_all_prices",
        "arguments": {"prices": {"AAPL": "1.50000000", "X": "1E+2"}},
    }
    assert PortfolioOperation.from_json(data) == operation
    assert str(PortfolioOperation.from_json(data).arguments["prices"]["AAPL"]) == "1.50000000"  # type: ignore[index]


def test_events_survive_pickling_and_hashing() -> None:
    operation = PortfolioOperation("update_all_prices", {"prices": {"AAPL": Decimal("1.5")}})
    event = PortfolioEvent(uuid4(), 2, NOW, (operation,), "key")

    assert pickle.loads(pickle.dumps(event)) == event
    assert hash(operation) == hash(PortfolioOperation.from_json(operation.to_json()))
    with pytest.raises(TypeError):
        operation.arguments["prices"] = {}  # type: ignore[index]


def test_replay_applies_events_through_the_domain() -> None:
    pid, other = uuid4(), uuid4()
    events = [
        PortfolioEvent(
            pid,
            1,
            NOW,
            (PortfolioOperation("created", {"name": "a", "cash_balance": Decimal(100)}),),
        ),
        PortfolioEvent(
            pid,
            2,
            NOW,
            (
                PortfolioOperation(
                    "transfer_in", {"amount": Decimal(50), "from_portfolio_id": str(other)}
                ),
                PortfolioOperation("set_cash_balance", {"cash_balance": Decimal(120)}),
            ),
        ),
        PortfolioEvent(pid, 3, NOW, (PortfolioOperation("set_name", {"name": "b"}),)),
    ]

    at_two, latest = replay(pid, events, 2), replay(pid, events)

    assert (at_two.version, at_two.cash_balance) == (2, Decimal(120))
    assert at_two.total_withdrawals == Decimal(30)
    assert (latest.version, latest.name, latest.id) == (3, "b", pid)
    assert latest.money_invariant_holds()
    assert latest.pending_operations() == ()


def test_replay_refuses_unknown_operations_and_a_missing_creation() -> None:
    with pytest.raises(ValidationError):
        reapply_operation(Portfolio("a"), PortfolioOperation("teleport", {}))
    with pytest.raises(ValidationError):
        replay(uuid4(), [PortfolioEvent(uuid4(), 2, NOW, ())])


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        10**30,
        "text",
        Decimal("1.50"),
        Decimal("-0.00000001"),
        uuid4(),
        [1, Decimal("2.0"), None],
        (1, "a"),
        {"$decimal": "not a tag", "nested": {"x": [Decimal(1)]}},
    ],
)
def test_results_round_trip_losslessly(value: object) -> None:
    decoded = decode_result(encode_result(value))
    assert decoded == value
    if isinstance(value, Decimal):
        # Read back as FixedPoint (prints without exponent), with the same digits.
        assert type(decoded) is FixedPoint
        assert decoded.as_tuple() == value.as_tuple()
    else:
        assert type(decoded) is type(value)


@pytest.mark.parametrize("value", [1.5, object(), {1: "x"}, {"a": {1.0}}, b"bytes"])
def test_results_that_are_not_json_able_are_rejected(value: object) -> None:
    with pytest.raises(ValidationError):
        encode_result(value)


def test_fingerprint_is_canonical_for_equal_amounts_and_differs_otherwise() -> None:
    pid = uuid4()
    one = operations_request(pid, [PortfolioOperation("deposit", {"amount": Decimal("100")})])
    same = operations_request(pid, [PortfolioOperation("deposit", {"amount": Decimal("100.00")})])
    other = operations_request(pid, [PortfolioOperation("deposit", {"amount": Decimal("100.01")})])
    elsewhere = operations_request(
        uuid4(), [PortfolioOperation("deposit", {"amount": Decimal("100")})]
    )

    assert fingerprint(one) == fingerprint(same)
    assert len({fingerprint(one), fingerprint(other), fingerprint(elsewhere)}) == 3
