"""The raw psycopg2 baseline: the same SQL the library sends, with no library around it.

One plain psycopg2 connection per worker (a trivial pool), READ COMMITTED,
parameters bound by the driver. Each function is one committed operation and
returns how many attempts it took.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Final

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import URL

_SELECT: Final = "SELECT cash_balance, total_deposits, version FROM portfolios WHERE id = %s"
_SELECT_FOR_UPDATE: Final = _SELECT + " FOR UPDATE"
_VERSIONED_UPDATE: Final = (
    "UPDATE portfolios SET cash_balance = %s, total_deposits = %s, "
    "version = version + 1, last_updated = now() WHERE id = %s AND version = %s"
)
_LOCK_VERSION: Final = "SELECT version FROM portfolios WHERE id = %s FOR UPDATE"
_REPRICE: Final = (
    "UPDATE positions AS p SET current_price = v.price, version = p.version + 1 "
    "FROM (VALUES {values}) AS v(symbol, price) "
    "WHERE p.portfolio_id = %s AND p.closed_at IS NULL AND p.symbol = v.symbol"
)
_BUMP: Final = "UPDATE portfolios SET version = version + 1, last_updated = now() WHERE id = %s"

Connection = psycopg2.extensions.connection


def fetch_row(cursor: psycopg2.extensions.cursor) -> tuple[Any, ...]:
    """The one row a statement returned (an error if there was none)."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError(f"no row for {cursor.query!r}")
    return row


def connect(url: URL) -> Connection:
    """A psycopg2 connection (READ COMMITTED, not autocommit) to the database at ``url``."""
    arguments: dict[str, Any] = url.translate_connect_args(username="user", database="dbname")
    connection: Connection = psycopg2.connect(**arguments)
    connection.set_session(isolation_level="READ COMMITTED", autocommit=False)
    return connection


@contextmanager
def connection_pool(url: URL, size: int) -> Iterator[list[Connection]]:
    """``size`` connections, one per worker, closed afterwards."""
    connections = [connect(url) for _ in range(size)]
    try:
        yield connections
    finally:
        for connection in connections:
            connection.close()


def deposit_optimistic(connection: Connection, portfolio_id: str, amount: Decimal) -> int:
    """SELECT the row, versioned UPDATE, COMMIT; start over if the version moved."""
    attempts = 0
    while True:
        attempts += 1
        with connection.cursor() as cursor:
            cursor.execute(_SELECT, (portfolio_id,))
            cash, deposits, version = fetch_row(cursor)
            cursor.execute(
                _VERSIONED_UPDATE, (cash + amount, deposits + amount, portfolio_id, version)
            )
            updated = cursor.rowcount
        if updated == 1:
            connection.commit()
            return attempts
        connection.rollback()


def deposit_locked(connection: Connection, portfolio_id: str, amount: Decimal) -> int:
    """SELECT ... FOR UPDATE (waiting), UPDATE, COMMIT: always one attempt."""
    with connection.cursor() as cursor:
        cursor.execute(_SELECT_FOR_UPDATE, (portfolio_id,))
        cash, deposits, version = fetch_row(cursor)
        cursor.execute(_VERSIONED_UPDATE, (cash + amount, deposits + amount, portfolio_id, version))
        if cursor.rowcount != 1:  # impossible while the row is locked; checked all the same
            raise RuntimeError(f"locked row {portfolio_id} changed under its lock")
    connection.commit()
    return 1


def reprice(
    connection: Connection, portfolio_id: str, prices: Sequence[tuple[str, Decimal]]
) -> int:
    """Lock the portfolio, UPDATE ... FROM (VALUES ...), bump its version once, COMMIT.

    The VALUES list is bound by psycopg2 in one ``execute`` (its C quoting),
    the fastest plain-driver way to send N pairs. Returns the rows re-priced.
    """
    flat: list[object] = [item for pair in prices for item in pair]
    statement = _REPRICE.format(values=",".join(["(%s,%s)"] * len(prices)))
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_VERSION, (portfolio_id,))
        cursor.execute(statement, (*flat, portfolio_id))
        changed = cursor.rowcount
        if changed:
            cursor.execute(_BUMP, (portfolio_id,))
    connection.commit()
    return int(changed)
