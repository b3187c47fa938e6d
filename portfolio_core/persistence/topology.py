"""Beyond one server: a transaction pooler in between, a primary that moves.

**Transaction poolers** (PgBouncer ``pool_mode = transaction`` and the like)
hand each transaction to any server connection. The library keeps no session
state (``SET LOCAL``, transaction-scoped advisory locks), and psycopg2 never
prepares statements on the server, so the sync engine is safe as it is.
asyncpg, by default, prepares *named* statements (``__asyncpg_stmt_1__``...)
and reuses them in later transactions: behind a transaction pooler they land
on another client's server connection (42P05 ``already exists``, 26000 ``does
not exist``, or worse, a Bind to another client's statement of the same name).
``transaction_pooler=True`` turns asyncpg's statement caches off (unnamed
statements, parsed again in each transaction).

``transaction_pooler=None`` (the default) detects a pooler instead of
trusting the URL: PostgreSQL's BackendKeyData (the pid a driver reports) comes
from the pooler, not the server, so it differs from ``pg_backend_pid()``. The
async engine checks each new connection once and refuses, loudly, to run
behind a pooler with its statement cache on. ``False`` skips the check (a
session-mode pooler, where named statements are safe).

**A primary that moves** (a multi-host URL with
``target_session_attrs=read-write``): while the old primary is down and the
standby not yet promoted, asyncpg finds no host to write to
(TargetServerAttributeNotMatched) and a connection that reached a standby
gets 25006 on its first write. Both mean "reconnect and try again": the
first becomes SQLSTATE 08001 like any refused connection, the second
invalidates the pool (``handle_error``) so the retry gets a new connection.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy
from sqlalchemy.engine import Engine, ExceptionContext

from portfolio_core.errors import ConfigurationError
from portfolio_core.persistence.errors import READ_ONLY_TRANSACTION, sqlstate_of

ASYNCPG_POOLER_CONNECT_ARGS: Final = {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
"""asyncpg's and SQLAlchemy's statement caches off: no named statement outlives a transaction."""

_BACKEND_PID: Final = "SELECT pg_backend_pid()"


def pooler_options(options: dict[str, Any], transaction_pooler: bool | None) -> dict[str, Any]:
    """Engine options for an async engine: the caches off behind a transaction pooler."""
    if transaction_pooler:
        connect_args = dict(options.get("connect_args", {}))
        for name, value in ASYNCPG_POOLER_CONNECT_ARGS.items():
            connect_args.setdefault(name, value)
        options = {**options, "connect_args": connect_args}
    return options


def _statement_cache_on(driver_connection: Any) -> bool:
    # asyncpg keeps its settings on the connection; a private attribute, so a
    # newer asyncpg without it is treated as "cache on" (checked, not skipped).
    config = getattr(driver_connection, "_config", None)
    return getattr(config, "statement_cache_size", 1) != 0


async def _asyncpg_pids(driver_connection: Any) -> tuple[int, int]:
    """(pid the driver was told at connect, pid of the server session), asyncpg."""
    # In a transaction and unnamed: Parse, Bind and Execute reach one server
    # connection and leave no named statement behind, pooler or not. Rolled
    # back: a probe sends no COMMIT (fault-injecting proxies watch for those).
    transaction = driver_connection.transaction()
    await transaction.start()
    try:
        statement = await driver_connection.prepare(_BACKEND_PID, name=False)
        actual = await statement.fetchval()
    finally:
        await transaction.rollback()
    return int(driver_connection.get_server_pid()), int(actual)


def refuse_hidden_pooler_async(dbapi_connection: Any) -> None:
    """Raise ConfigurationError if a pooler sits between asyncpg (cache on) and the server."""
    if not _statement_cache_on(dbapi_connection.driver_connection):
        return
    advertised, actual = dbapi_connection.run_async(_asyncpg_pids)
    if advertised != actual:
        dbapi_connection.close()
        raise ConfigurationError(
            f"a connection pooler answers for PostgreSQL (backend pid {actual}, the "
            f"driver was given {advertised}): asyncpg's prepared statements would reach "
            "other clients' server connections. Create the engine with "
            "transaction_pooler=True (a transaction-mode pooler such as PgBouncer) or "
            "transaction_pooler=False (a session-mode pooler)"
        )


def primary_moved_is_a_disconnect(context: ExceptionContext) -> None:
    """``handle_error``: 25006 on a write means this connection reached a standby.

    Marked as a disconnect, SQLAlchemy invalidates the pool: the retry (or the
    commit outcome resolution) connects again and finds the new primary.
    """
    if sqlstate_of(context.original_exception) == READ_ONLY_TRANSACTION:
        context.is_disconnect = True


def watch_primary(engine: Engine) -> None:
    """Attach :func:`primary_moved_is_a_disconnect` to an engine (sync side of an async one)."""
    sqlalchemy.event.listen(engine, "handle_error", primary_moved_is_a_disconnect)


def no_read_write_host(error: BaseException) -> bool:
    """Whether ``error`` (or the error it wraps) is asyncpg's "no host is read-write"."""
    try:
        from asyncpg.exceptions import TargetServerAttributeNotMatched
    except ImportError:  # pragma: no cover - the async extra is not installed
        return False
    return any(
        isinstance(candidate, TargetServerAttributeNotMatched)
        for candidate in (error, error.__cause__, getattr(error, "orig", None))
    )
