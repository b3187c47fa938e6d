"""A read-only call sees one committed state, even across its statements.

``get`` reads the portfolio row, then its positions: at READ COMMITTED a
commit landing between the two would give the cash from before a purchase
next to the position it bought. Reads run at REPEATABLE READ (one snapshot).
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, event

from portfolio_core import PortfolioStore, PositionRequest


def test_a_purchase_committed_between_gets_statements_is_not_half_seen(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("1000"))
    buyer_started = threading.Event()
    buyer_done: list[bool] = []

    def buy() -> None:
        store.execute(pid, lambda p: p.open_position(PositionRequest("AAPL", 1, "100")))

    def between(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Just before get's positions SELECT: another unit of work buys and commits.
        if buyer_started.is_set() or "FROM positions" not in statement:
            return
        buyer_started.set()  # once: the buyer's own statements pass through here too
        buyer = threading.Thread(target=buy)
        buyer.start()
        buyer.join(30)
        buyer_done.append(not buyer.is_alive())

    event.listen(engine, "before_cursor_execute", between)
    try:
        snapshot = store.get(pid)
    finally:
        event.remove(engine, "before_cursor_execute", between)

    assert buyer_done == [True]
    assert snapshot.version == 1
    assert snapshot.cash_balance == Decimal("1000")
    assert list(snapshot.positions) == []
    assert snapshot.money_invariant_holds()
    after = store.get(pid)
    assert after.version == 2
    assert after.cash_balance == Decimal("900")
    assert list(after.positions) == ["AAPL"]
