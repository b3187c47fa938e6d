"""Which optional capabilities this installation has: the audit trail and idempotency keys.

The demo uses them when they exist: ``portfolio_events`` (one row per
committed unit of work, keyed by portfolio_id and version) makes "versions ==
events" checkable; an ``idempotency_key`` parameter on the store's mutating
methods lets a worker re-send an operation whose COMMIT was cut, and makes
"every keyed operation applied exactly once" checkable.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Final

import sqlalchemy
from sqlalchemy import Engine

from portfolio_core.store import PortfolioStore

EVENTS_TABLE: Final = "portfolio_events"
KEYS_TABLE: Final = "idempotency_keys"
KEYED_METHODS: Final = ("execute", "transfer", "update_all_prices")


@dataclass(frozen=True)
class Features:
    """``events_table`` (name or None), its idempotency-key column, keyed store methods,
    and the table of stored idempotency keys (name or None)."""

    events_table: str | None
    events_key_column: str | None
    keyed_store: bool
    keys_table: str | None = None


def keyed_store() -> bool:
    """Whether every mutating store method takes ``idempotency_key``."""
    return all(
        "idempotency_key" in inspect.signature(getattr(PortfolioStore, name)).parameters
        for name in KEYED_METHODS
    )


def detect(engine: Engine) -> Features:
    """Inspect the migrated database and the installed store."""
    inspector = sqlalchemy.inspect(engine)
    table = EVENTS_TABLE if inspector.has_table(EVENTS_TABLE) else None
    key_column = None
    if table is not None:
        columns = {c["name"] for c in inspector.get_columns(table)}
        key_column = "idempotency_key" if "idempotency_key" in columns else None
    keys_table = KEYS_TABLE if inspector.has_table(KEYS_TABLE) else None
    return Features(table, key_column, keyed_store(), keys_table)
