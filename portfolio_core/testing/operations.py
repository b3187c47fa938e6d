"""Applying drawn operations (PortfolioOperation records) to portfolios and stores."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Final
from uuid import UUID

from portfolio_core.domain.events import PortfolioOperation
from portfolio_core.domain.replay import reapply_operation
from portfolio_core.errors import InsufficientFundsError, PositionNotFoundError, ValidationError
from portfolio_core.store import PortfolioStore
from portfolio_core.store_call import LockMode

__all__ = ["REFUSALS", "execute_operation", "money_moved"]

REFUSALS: Final = (ValidationError, InsufficientFundsError, PositionNotFoundError)
"""The errors a domain command refuses with; a refused command changes nothing."""


def execute_operation(
    store: PortfolioStore,
    portfolio_id: UUID,
    operation: PortfolioOperation,
    *,
    lock: LockMode = "optimistic",
) -> None:
    """Apply ``operation`` to the stored portfolio in one committed unit of work.

    ``update_all_prices`` goes through the store's single-statement SQL path
    (``PortfolioStore.update_all_prices``), every other kind through
    ``PortfolioStore.execute`` with ``lock``. Refusals propagate (see REFUSALS).
    """
    if operation.kind == "update_all_prices":
        prices = operation.arguments.get("prices")
        if not isinstance(prices, Mapping):
            raise ValidationError("prices", prices, "must be a mapping of symbol to price")
        store.update_all_prices(portfolio_id, dict(prices))
        return
    store.execute(
        portfolio_id, lambda portfolio: reapply_operation(portfolio, operation), lock=lock
    )


def money_moved(operation: PortfolioOperation) -> Decimal:
    """Cash brought in (+) or taken out (-) of the system by an accepted operation."""
    amount = operation.arguments.get("amount")
    if not isinstance(amount, Decimal):
        return Decimal(0)
    return {"deposit": amount, "withdraw": -amount}.get(operation.kind, Decimal(0))
