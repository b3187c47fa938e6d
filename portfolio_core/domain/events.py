"""What the domain did: operation records, audit events, and replay from them.

Every Portfolio command appends a :class:`PortfolioOperation` (its kind and
its arguments, as given and validated) to the portfolio's pending list; the
persistence layer writes them, one :class:`PortfolioEvent` per committed unit
of work per portfolio, in the same transaction as the change
(``portfolio_core.persistence.events``).

Operation kinds and their arguments (amounts are Decimals, the rest str):

====================== ==================================================
created                name, cash_balance (the event at version 1)
deposit, withdraw      amount
transfer_out           amount, to_portfolio_id
transfer_in            amount, from_portfolio_id
open_position          symbol, quantity, entry_price
close_position         symbol, exit_price, quantity (None: the whole position)
update_position_price  symbol, price
update_all_prices      prices (symbol -> price, the open positions re-priced)
set_name               name (update_portfolio_atomic)
set_cash_balance       cash_balance (update_portfolio_atomic: booked as a
                       deposit or withdrawal of the difference)
====================== ==================================================

Stored JSON (:meth:`PortfolioOperation.to_json`): Decimals as their ``str``
(exact). An ``update_all_prices`` of more than COMPACT_PRICES_ABOVE prices is
stored compactly, as two texts in the same order, each joined by single
spaces: ``{"symbols": "AAPL MSFT ...", "prices": "155 410.5 ..."}`` (one JSON
string each: an object of 10,000 prices cost the client and the server's
JSONB parser several times more). Both shapes read back to the same
operation, so events written before the compact shape still replay.

:func:`replay` rebuilds a portfolio from its events alone by calling the same
domain methods on a fresh Portfolio; only generated position ids and
wall-clock timestamps differ from the stored aggregate (the replayed
``created_at``/``last_updated`` are the events' database timestamps).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID

from portfolio_core.domain.money import fixed
from portfolio_core.domain.price_list import ValidatedPrices, compact, from_compact

Argument = Decimal | str | None | Mapping[str, Decimal]
"""An operation argument: an amount, a symbol/name/id, None, or symbol -> price."""

DECIMAL_ARGUMENTS: Final = frozenset(
    {"amount", "cash_balance", "quantity", "entry_price", "exit_price", "price"}
)
PRICE_MAP_ARGUMENTS: Final = frozenset({"prices"})
COMPACT_PRICES_ABOVE: Final = 64
"""A price map of more entries is stored in the compact shape (see the module doc)."""


@dataclass(frozen=True, slots=True)
class PortfolioOperation:
    """One domain command as it was applied: ``kind`` and its ``arguments``."""

    kind: str
    arguments: Mapping[str, Argument]

    def __post_init__(self) -> None:
        # Read-only view: an operation record is a fact, not a draft.
        object.__setattr__(self, "arguments", MappingProxyType(dict(self.arguments)))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; Decimals become strings (``str`` keeps them exact)."""
        arguments: dict[str, Any] = {}
        for name, value in self.arguments.items():
            if isinstance(value, Decimal):
                arguments[name] = str(value)
            elif (
                name in PRICE_MAP_ARGUMENTS
                and isinstance(value, Mapping)
                and len(value) > COMPACT_PRICES_ABOVE
            ):
                symbols, prices = (
                    value.texts() if isinstance(value, ValidatedPrices) else compact(value)
                )
                arguments["symbols"], arguments[name] = symbols, prices
            elif isinstance(value, Mapping):
                arguments[name] = {symbol: str(price) for symbol, price in value.items()}
            else:
                arguments[name] = value
        return {"kind": self.kind, "arguments": arguments}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PortfolioOperation:
        """The inverse of :meth:`to_json`."""
        arguments: dict[str, Argument] = {}
        stored = dict(data["arguments"])
        for name, value in stored.items():
            if name == "symbols" and isinstance(stored.get("prices"), str):
                continue  # the compact shape: read with its prices
            if isinstance(value, str) and name in PRICE_MAP_ARGUMENTS:
                arguments[name] = from_compact(str(stored["symbols"]), value)
            elif value is not None and name in DECIMAL_ARGUMENTS:
                arguments[name] = fixed(Decimal(value))
            elif value is not None and name in PRICE_MAP_ARGUMENTS:
                arguments[name] = {symbol: fixed(Decimal(p)) for symbol, p in value.items()}
            else:
                arguments[name] = value
        return cls(str(data["kind"]), arguments)

    def __reduce__(self) -> tuple[Any, ...]:
        # A mappingproxy can not be pickled; its dict can (events cross processes).
        return (PortfolioOperation, (self.kind, dict(self.arguments)))

    def __hash__(self) -> int:
        # Consistent with ==: mappings compare whatever their order, Decimals by value.
        return hash(
            (
                self.kind,
                frozenset(
                    (name, frozenset(value.items()) if isinstance(value, Mapping) else value)
                    for name, value in self.arguments.items()
                ),
            )
        )


@dataclass(frozen=True, slots=True)
class PortfolioEvent:
    """One committed unit of work on one portfolio, as the audit trail keeps it.

    ``version`` is the portfolio's version after the change (1 for its
    creation); ``occurred_at`` is the database's transaction timestamp;
    ``operations`` the commands applied, in order; ``idempotency_key`` the key
    the change was made under, if any.
    """

    portfolio_id: UUID
    version: int
    occurred_at: datetime
    operations: tuple[PortfolioOperation, ...]
    idempotency_key: str | None = None
