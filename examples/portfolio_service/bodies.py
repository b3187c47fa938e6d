"""Request bodies. Money is a JSON string holding an exact decimal ("150.25"), never a number.

A JSON number would reach Python as a float, which has already lost the
exact value, so money fields are strict strings: ``1.5`` is refused (422)
before anything runs. The library then validates the string itself
(finite, in range, at most 8 places: no NaN, no Infinity, no rounding).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictStr

Money = Annotated[StrictStr, Field(examples=["150.25"], description="An exact decimal string.")]


class Body(BaseModel):
    """Base of the request bodies: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NewPortfolio(Body):
    """``POST /portfolios``."""

    name: StrictStr
    cash_balance: Money = "0"


class CashMovement(Body):
    """``POST /portfolios/{id}/deposits`` and ``/withdrawals``."""

    amount: Money


class OpenPosition(Body):
    """``POST /portfolios/{id}/positions``: buy ``quantity`` of ``symbol`` at ``entry_price``."""

    symbol: StrictStr
    quantity: Money
    entry_price: Money


class ClosePosition(Body):
    """``POST /portfolios/{id}/positions/{symbol}/close``: all of it, or ``quantity``."""

    exit_price: Money
    quantity: Money | None = None


class Transfer(Body):
    """``POST /transfers``: move ``amount`` of cash from one portfolio to another."""

    from_id: UUID
    to_id: UUID
    amount: Money
