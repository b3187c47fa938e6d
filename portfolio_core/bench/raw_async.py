"""The raw asyncpg baseline: the async library's SQL with nothing around it.

One asyncpg connection per task (a trivial pool), READ COMMITTED (the server
default), statements prepared and cached by asyncpg. Each function is one
committed operation and returns how many attempts it took.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

import asyncpg
from sqlalchemy.engine import URL

_SELECT: Final = "SELECT cash_balance, total_deposits, version FROM portfolios WHERE id = $1"
_SELECT_FOR_UPDATE: Final = _SELECT + " FOR UPDATE"
_VERSIONED_UPDATE: Final = (
    "UPDATE portfolios SET cash_balance = $1, total_deposits = $2, "
    "version = version + 1, last_updated = now() WHERE id = $3 AND version = $4"
)
_LOCK_VERSION: Final = "SELECT version FROM portfolios WHERE id = $1 FOR UPDATE"
_REPRICE: Final = (
    "UPDATE positions AS p SET current_price = v.price, version = p.version + 1 "
    "FROM unnest($1::varchar[], $2::numeric[]) AS v(symbol, price) "
    "WHERE p.portfolio_id = $3 AND p.closed_at IS NULL AND p.symbol = v.symbol"
)
_BUMP: Final = "UPDATE portfolios SET version = version + 1, last_updated = now() WHERE id = $1"


async def connect(url: URL) -> Any:
    """An asyncpg connection to the database at ``url``."""
    arguments: dict[str, Any] = url.translate_connect_args(username="user")
    return await asyncpg.connect(**arguments)


async def connection_pool(url: URL, size: int) -> list[Any]:
    """``size`` connections, one per task (close them with :func:`close_all`)."""
    return [await connect(url) for _ in range(size)]


async def close_all(connections: Sequence[Any]) -> None:
    """Close every connection."""
    for connection in connections:
        await connection.close()


def _changed(status: str) -> int:
    """Rows an UPDATE touched, from asyncpg's command tag (``UPDATE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


async def deposit_optimistic(connection: Any, portfolio_id: UUID, amount: Decimal) -> int:
    """SELECT the row, versioned UPDATE, COMMIT; start over if the version moved."""
    attempts = 0
    while True:
        attempts += 1
        transaction = connection.transaction()
        await transaction.start()
        cash, deposits, version = await connection.fetchrow(_SELECT, portfolio_id)
        status = await connection.execute(
            _VERSIONED_UPDATE, cash + amount, deposits + amount, portfolio_id, version
        )
        if _changed(status) == 1:
            await transaction.commit()
            return attempts
        await transaction.rollback()


async def deposit_locked(connection: Any, portfolio_id: UUID, amount: Decimal) -> int:
    """SELECT ... FOR UPDATE (waiting), UPDATE, COMMIT: always one attempt."""
    async with connection.transaction():
        cash, deposits, version = await connection.fetchrow(_SELECT_FOR_UPDATE, portfolio_id)
        status = await connection.execute(
            _VERSIONED_UPDATE, cash + amount, deposits + amount, portfolio_id, version
        )
        if _changed(status) != 1:  # impossible while the row is locked; checked all the same
            raise RuntimeError(f"locked row {portfolio_id} changed under its lock")
    return 1


async def reprice(
    connection: Any, portfolio_id: UUID, prices: Sequence[tuple[str, Decimal]]
) -> int:
    """Lock the portfolio, UPDATE ... FROM unnest(arrays), bump its version once, COMMIT."""
    symbols = [symbol for symbol, _ in prices]
    values = [price for _, price in prices]
    async with connection.transaction():
        await connection.fetchval(_LOCK_VERSION, portfolio_id)
        changed = _changed(await connection.execute(_REPRICE, symbols, values, portfolio_id))
        if changed:
            await connection.execute(_BUMP, portfolio_id)
    return changed
