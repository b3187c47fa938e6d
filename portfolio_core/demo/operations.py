"""The demo's trading operations: a seeded random mix, and how each one runs.

A :class:`Planner` draws operations from its own ``random.Random`` so that a
seed replays the same plan; :func:`apply` runs one through the
PortfolioStore (one call, which the store retries as a whole unit of work) and
returns what it changed, as an :class:`~portfolio_core.demo.ledger.Effect`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final
from uuid import UUID

from portfolio_core.demo.ledger import Effect, Totals
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import PositionRequest
from portfolio_core.store import LOCK_MODES, LockMode, PortfolioStore

SYMBOLS: Final = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA")

MIX: Final[dict[str, int]] = {
    # kind: relative weight
    "buy": 22,
    "partial_close": 12,
    "close": 8,
    "price": 14,
    "reprice_all": 8,
    "deposit": 12,
    "withdraw": 12,
    "transfer": 12,
}
"""The operation mix; ``buy`` is reported as ``open`` or ``add`` (symbol already held)."""

KINDS: Final = ("open", "add", "partial_close", "close", "price", "reprice_all", "deposit",
                "withdraw", "transfer")  # fmt: skip
"""Every kind a committed operation is reported as."""


@dataclass(frozen=True)
class Operation:
    """One planned operation (``key`` is its idempotency key when keys are used)."""

    kind: str
    portfolio: UUID
    lock: LockMode = "optimistic"
    other: UUID | None = None
    symbol: str = ""
    quantity: Decimal = Decimal(0)
    price: Decimal = Decimal(0)
    amount: Decimal = Decimal(0)
    prices: dict[str, Decimal] = field(default_factory=dict)
    key: str | None = None


def _cents(rng: random.Random, low: int, high: int) -> Decimal:
    """A random amount with two decimal places, exactly (no float involved)."""
    return Decimal(rng.randint(low * 100, high * 100)).scaleb(-2)


class Planner:
    """Draws a seeded random sequence of operations over the demo's portfolios."""

    def __init__(
        self,
        rng: random.Random,
        portfolio_ids: Sequence[UUID],
        hot_share: float,  # float-ok: a probability
        *,
        keyed: bool = False,
    ) -> None:
        self.rng = rng
        self.portfolio_ids = list(portfolio_ids)
        self.hot_share = hot_share
        self.keyed = keyed
        self._kinds = list(MIX)
        self._weights = list(MIX.values())

    def _portfolio(self) -> UUID:
        if self.rng.random() < self.hot_share:
            return self.portfolio_ids[0]
        return self.rng.choice(self.portfolio_ids)

    def next(self) -> Operation:
        """The next operation of the plan."""
        rng = self.rng
        kind = rng.choices(self._kinds, self._weights)[0]
        pid = self._portfolio()
        common: dict[str, Any] = {
            "kind": kind,
            "portfolio": pid,
            "lock": rng.choice(LOCK_MODES),
            "symbol": rng.choice(SYMBOLS),
            "key": f"demo-{uuid.UUID(int=rng.getrandbits(128))}" if self.keyed else None,
        }
        if kind == "buy":
            return Operation(
                **common, quantity=Decimal(rng.randint(1, 20)), price=_cents(rng, 50, 500)
            )
        if kind in ("partial_close", "close", "price"):
            return Operation(**common, price=_cents(rng, 50, 500))
        if kind == "reprice_all":
            prices = {symbol: _cents(rng, 50, 500) for symbol in SYMBOLS}
            return Operation(**common, prices=prices)
        if kind == "deposit":
            return Operation(**common, amount=_cents(rng, 10, 5000))
        if kind == "withdraw":
            return Operation(**common, amount=_cents(rng, 10, 5000))
        other = rng.choice([p for p in self.portfolio_ids if p != pid])
        return Operation(**common, other=other, amount=_cents(rng, 10, 5000))


def _one(pid: UUID, totals: Totals) -> dict[str, Totals]:
    return {str(pid): totals}


def would_be(op: Operation) -> Effect:
    """What ``op`` changes if it commits (used when its outcome is unknown).

    A re-pricing that matched no position commits nothing: its bump may be
    zero, which the empty choice of an unknown operation already covers.
    """
    bump = Totals(1)
    if op.kind == "deposit":
        return Effect(op.kind, _one(op.portfolio, Totals(1, deposits=op.amount)), op.amount)
    if op.kind == "withdraw":
        return Effect(op.kind, _one(op.portfolio, Totals(1, withdrawals=op.amount)), -op.amount)
    if op.kind == "transfer":
        assert op.other is not None
        return Effect(
            op.kind,
            {
                str(op.portfolio): Totals(1, withdrawals=op.amount),
                str(op.other): Totals(1, deposits=op.amount),
            },
        )
    return Effect(op.kind, _one(op.portfolio, bump))


def _buy(op: Operation) -> Any:
    request = PositionRequest(op.symbol, op.quantity, op.price)

    def change(portfolio: Portfolio) -> str:
        label = "add" if op.symbol in portfolio.positions else "open"
        portfolio.open_position(request)
        return label

    return change


def _close(op: Operation) -> Any:
    def change(portfolio: Portfolio) -> str:
        held = portfolio.positions.get(op.symbol)
        half = None if held is None else (held.quantity / 2).quantize(Decimal(1), ROUND_DOWN)
        if op.kind == "partial_close" and half is not None and 1 <= half < held.quantity:  # type: ignore[union-attr]
            portfolio.close_position(op.symbol, op.price, half)
            return "partial_close"
        # No position: close_position raises PositionNotFoundError, a domain outcome.
        portfolio.close_position(op.symbol, op.price)
        return "close"

    return change


def _simple(op: Operation) -> Any:
    def change(portfolio: Portfolio) -> str:
        if op.kind == "price":
            portfolio.update_position_price(op.symbol, op.price)
        elif op.kind == "deposit":
            portfolio.deposit(op.amount)
        else:
            portfolio.withdraw(op.amount)
        return op.kind

    return change


def apply(store: PortfolioStore, op: Operation, *, lock_timeout: float) -> Effect:  # float-ok
    """Run ``op`` through the store (one call: the store retries it as a whole).

    Returns its committed effect; domain refusals (InsufficientFundsError,
    PositionNotFoundError) and concurrency errors propagate to the worker.
    """
    keyed: dict[str, Any] = {} if op.key is None else {"idempotency_key": op.key}
    if op.kind == "reprice_all":
        updated = store.update_all_prices(op.portfolio, op.prices, **keyed)
        return Effect(op.kind, _one(op.portfolio, Totals(1 if updated else 0)))
    if op.kind == "transfer":
        assert op.other is not None
        store.transfer(op.portfolio, op.other, op.amount, **keyed)
        return would_be(op)
    change = _buy(op) if op.kind == "buy" else _close(op) if "close" in op.kind else _simple(op)
    timeout = lock_timeout if op.lock == "wait" else None
    label: str = store.execute(op.portfolio, change, lock=op.lock, lock_timeout=timeout, **keyed)
    effect = would_be(op)
    return Effect(label, effect.portfolios, effect.external)
