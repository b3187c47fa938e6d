"""The demo's planned trades: a seeded random mix, and how each one runs.

A :class:`Planner` draws :class:`PlannedTrade` values from its own
``random.Random`` so that a seed replays the same plan; :func:`run_trade` runs
one through the PortfolioStore (one call, which the store retries as a whole
unit of work) and returns what it changed, as an
:class:`~portfolio_core.demo.ledger.Effect`. (Not to be confused with the audit
trail's :class:`~portfolio_core.PortfolioOperation` records.)
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final
from uuid import UUID

from portfolio_core.demo.ledger import Effect, Totals
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import PositionRequest
from portfolio_core.store import LOCK_MODES, LockMode, PortfolioStore
from portfolio_core.units import Ratio, Seconds

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
class PlannedTrade:
    """One planned trade (``key`` is its idempotency key when keys are used)."""

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
    """Draws a seeded random sequence of trades over the demo's portfolios."""

    def __init__(
        self,
        rng: random.Random,
        portfolio_ids: Sequence[UUID],
        hot_share: Ratio,
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

    def next(self) -> PlannedTrade:
        """The next trade of the plan."""
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
            return PlannedTrade(
                **common, quantity=Decimal(rng.randint(1, 20)), price=_cents(rng, 50, 500)
            )
        if kind in ("partial_close", "close", "price"):
            return PlannedTrade(**common, price=_cents(rng, 50, 500))
        if kind == "reprice_all":
            prices = {symbol: _cents(rng, 50, 500) for symbol in SYMBOLS}
            return PlannedTrade(**common, prices=prices)
        if kind in ("deposit", "withdraw"):
            return PlannedTrade(**common, amount=_cents(rng, 10, 5000))
        other = rng.choice([p for p in self.portfolio_ids if p != pid])
        return PlannedTrade(**common, other=other, amount=_cents(rng, 10, 5000))


def _one(pid: UUID, totals: Totals) -> dict[str, Totals]:
    return {str(pid): totals}


def _counterparty(trade: PlannedTrade) -> UUID:
    """The portfolio a transfer pays into (a transfer planned without one is a bug)."""
    if trade.other is None:
        raise ValueError(f"a transfer needs a counterparty portfolio: {trade}")
    return trade.other


def would_be(trade: PlannedTrade) -> Effect:
    """What ``trade`` changes if it commits (used when its outcome is unknown).

    A re-pricing that matched no position commits nothing: its bump may be
    zero, which the empty choice of an unknown trade already covers.
    """
    if trade.kind == "deposit":
        return Effect(
            trade.kind, _one(trade.portfolio, Totals(1, deposits=trade.amount)), trade.amount
        )
    if trade.kind == "withdraw":
        withdrawn = Totals(1, withdrawals=trade.amount)
        return Effect(trade.kind, _one(trade.portfolio, withdrawn), -trade.amount)
    if trade.kind == "transfer":
        return Effect(
            trade.kind,
            {
                str(trade.portfolio): Totals(1, withdrawals=trade.amount),
                str(_counterparty(trade)): Totals(1, deposits=trade.amount),
            },
        )
    return Effect(trade.kind, _one(trade.portfolio, Totals(1)))


def _buy(trade: PlannedTrade) -> Callable[[Portfolio], str]:
    request = PositionRequest(trade.symbol, trade.quantity, trade.price)

    def change(portfolio: Portfolio) -> str:
        label = "add" if trade.symbol in portfolio.positions else "open"
        portfolio.open_position(request)
        return label

    return change


def _close(trade: PlannedTrade) -> Callable[[Portfolio], str]:
    def change(portfolio: Portfolio) -> str:
        held = portfolio.positions.get(trade.symbol)
        if trade.kind == "partial_close" and held is not None:
            half = (held.quantity / 2).quantize(Decimal(1), ROUND_DOWN)
            if 1 <= half < held.quantity:
                portfolio.close_position(trade.symbol, trade.price, half)
                return "partial_close"
        # No position: close_position raises PositionNotFoundError, a domain outcome.
        portfolio.close_position(trade.symbol, trade.price)
        return "close"

    return change


def _simple(trade: PlannedTrade) -> Callable[[Portfolio], str]:
    def change(portfolio: Portfolio) -> str:
        if trade.kind == "price":
            portfolio.update_position_price(trade.symbol, trade.price)
        elif trade.kind == "deposit":
            portfolio.deposit(trade.amount)
        else:
            portfolio.withdraw(trade.amount)
        return trade.kind

    return change


def run_trade(store: PortfolioStore, trade: PlannedTrade, *, lock_timeout: Seconds) -> Effect:
    """Run ``trade`` through the store (one call: the store retries it as a whole).

    Returns its committed effect; domain refusals (InsufficientFundsError,
    PositionNotFoundError) and concurrency errors propagate to the worker.
    """
    keyed: dict[str, Any] = {} if trade.key is None else {"idempotency_key": trade.key}
    if trade.kind == "reprice_all":
        updated = store.update_all_prices(trade.portfolio, trade.prices, **keyed)
        return Effect(trade.kind, _one(trade.portfolio, Totals(1 if updated else 0)))
    if trade.kind == "transfer":
        store.transfer(trade.portfolio, _counterparty(trade), trade.amount, **keyed)
        return would_be(trade)
    if trade.kind == "buy":
        change = _buy(trade)
    else:
        change = _close(trade) if "close" in trade.kind else _simple(trade)
    timeout = lock_timeout if trade.lock == "wait" else None
    label = store.execute(trade.portfolio, change, lock=trade.lock, lock_timeout=timeout, **keyed)
    effect = would_be(trade)
    return Effect(label, effect.portfolios, effect.external)
