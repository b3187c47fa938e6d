"""The demo's invariant checks catch what they claim to catch, on a real database.

Each test makes a small honest history through the store, checks that every
invariant holds, then breaks one thing behind the library's back (raw SQL)
and checks that the matching invariant, and only a relevant one, fails.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from uuid import UUID

from sqlalchemy import Engine, text

from portfolio_core import PortfolioStore
from portfolio_core.demo.invariants import Check, check_invariants
from portfolio_core.demo.ledger import Ledger
from portfolio_core.demo.trades import PlannedTrade, run_trade, would_be


def _history(store: PortfolioStore) -> tuple[list[UUID], Ledger, dict[str, str]]:
    """Two portfolios, a keyed deposit, buy and transfer, booked in a ledger like the demo does."""
    first = store.create_portfolio("one", Decimal("1000"))
    second = store.create_portfolio("two", Decimal("500"))
    ledger, keys = Ledger(), {}
    trades = [
        PlannedTrade("deposit", first, amount=Decimal("100.50")),
        PlannedTrade(
            "buy",
            first,
            lock="wait",
            symbol="AAPL",
            quantity=Decimal(2),
            price=Decimal(10),
        ),
        PlannedTrade("transfer", first, other=second, amount=Decimal("25")),
    ]
    for number, trade in enumerate(trades):
        key = f"test-{number}"
        effect = run_trade(store, replace(trade, key=key), lock_timeout=1.0)
        ledger.committed(effect)
        keys[key] = effect.kind
    return [first, second], ledger, keys


def _failing(checks: list[Check]) -> set[str]:
    return {c.name for c in checks if not c.holds}


def test_every_invariant_holds_after_an_honest_history(
    store: PortfolioStore, engine: Engine
) -> None:
    ids, ledger, keys = _history(store)

    checks = check_invariants(engine, ids, ledger, keys, [])

    assert _failing(checks) == set()
    assert len(checks) >= 7


def test_cash_changed_behind_the_library_breaks_money_conservation(
    store: PortfolioStore, engine: Engine
) -> None:
    ids, ledger, keys = _history(store)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE portfolios SET cash_balance = cash_balance + 0.01 WHERE id = :id"),
            {"id": ids[0]},
        )

    failing = _failing(check_invariants(engine, ids, ledger, keys, []))

    assert {"money conserved per portfolio", "money conserved in total"} <= failing


def test_a_committed_change_missing_from_the_ledger_breaks_the_version_count(
    store: PortfolioStore, engine: Engine
) -> None:
    ids, ledger, keys = _history(store)
    # A deposit that committed but that no worker counted: a lost update's mirror image.
    store.execute(ids[1], lambda p: p.deposit(Decimal("1")))

    failing = _failing(check_invariants(engine, ids, ledger, keys, []))

    assert "versions == committed changes" in failing
    assert "external flows reconcile (transfers cancel out)" in failing


def test_an_unknown_outcome_is_accepted_whether_it_committed_or_not(
    store: PortfolioStore, engine: Engine
) -> None:
    ids, ledger, keys = _history(store)
    committed = PlannedTrade("deposit", ids[1], amount=Decimal("7"))
    run_trade(store, committed, lock_timeout=1.0)
    ledger.outcome_unknown(would_be(committed))
    ledger.outcome_unknown(would_be(PlannedTrade("withdraw", ids[1], amount=Decimal("3"))))

    assert _failing(check_invariants(engine, ids, ledger, keys, [])) == set()


def test_an_unexpected_error_fails_the_run(store: PortfolioStore, engine: Engine) -> None:
    ids, ledger, keys = _history(store)

    checks = check_invariants(engine, ids, ledger, keys, ["deposit: Boom: x"])

    assert _failing(checks) == {"no unexpected errors"}


def test_a_keyed_change_applied_twice_breaks_exactly_once(
    store: PortfolioStore, engine: Engine
) -> None:
    ids, ledger, keys = _history(store)
    # Replays the keyed deposit's event a second time, as a double application would.
    with engine.begin() as connection:
        # Past the event-version trigger, as only a superuser can (see the README's threat model).
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(
            text(
                "INSERT INTO portfolio_events (portfolio_id, version, operations, idempotency_key) "
                "SELECT portfolio_id, version + 100, operations, idempotency_key "
                "FROM portfolio_events WHERE idempotency_key = 'test-0'"
            )
        )

    failing = _failing(check_invariants(engine, ids, ledger, keys, []))

    assert "every keyed op applied exactly once" in failing
    assert "versions == events" in failing
