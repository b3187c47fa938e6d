"""Which SQL statements route to a single distribution key (Citus), and the listed exceptions.

A pragmatic reading of the SQL text, not a parser: each table the statement
names must be pinned by its distribution column (DISTRIBUTION below) in the
WHERE clause, ``=`` a parameter or ``IN``/``= ANY`` parameters, or joined on
it to a pinned table; an INSERT must list the column. Statements that touch
no table (transaction control, settings, advisory locks) and the admin
statements in EXCEPTIONS are allowed, each with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine

DISTRIBUTION: Final = {
    "portfolios": "id",
    "positions": "portfolio_id",
    "portfolio_events": "portfolio_id",
    "idempotency_keys": "key",
}
"""The distribution column of each table (docs/scaling.md)."""

NO_TABLE: Final = (
    # Transaction control and savepoints: no rows.
    r"^(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\b",
    # Per-transaction settings (lock_timeout) and the dialect's own queries: no rows.
    r"^(SHOW|SET|RESET) ",
    r"^SELECT (current_setting|set_config)\(",
    r"^SELECT pg_backend_pid\(\)$",
    r"^select pg_catalog\.version\(\)|^select current_schema\(\)|^show ",
)

EXCEPTIONS: Final = {
    # Entity locks (ConcurrencyService.entity_lock): no table; on Citus taken
    # on the coordinator every client connects to (docs/scaling.md).
    r"^SELECT pg_(try_)?advisory_xact_lock\(": "advisory entity lock, no table",
    # PostgreSQLPortfolioRepository.list(): a reporting read over every
    # portfolio; a multi-shard query on Citus, correct but not single-key.
    r"FROM (?:\S+\.)?portfolios ORDER BY (?:\S+\.)?portfolios\.created_at": (
        "repository list(): every portfolio"
    ),
    # purge_idempotency_keys: admin clean-up by age, every shard by design.
    r"^DELETE FROM (?:\S+\.)?idempotency_keys WHERE (?:\S+\.)?idempotency_keys\.created_at <": (
        "purge of old keys"
    ),
}

_PARAM = r"(?:\$\d+|%\(\w+\)s)(?:::[\w\[\]]+)?"
_PINNED = rf"(?:=\s*{_PARAM}|IN \(\s*{_PARAM}(?:,\s*{_PARAM})*\s*\)|=\s*ANY\s*\(\s*{_PARAM}\s*\))"
# A table may be schema-qualified (``schema=``): ``"app".portfolios``, ``app.portfolios``.
_SCHEMA = r'(?:"?\w+"?\.)?'
_TABLE = (
    rf"\b(?:FROM|JOIN|UPDATE|INTO)\s+{_SCHEMA}(" + "|".join(DISTRIBUTION) + r")\b(?:\s+AS\s+(\w+))?"
)


# A row's versioned UPDATE and its event's INSERT in one statement (persistence.row_flush):
# the event's portfolio_id is the id the pinned UPDATE returns, so one key.
_ROW_WITH_EVENT = re.compile(
    r"^WITH (\w+) AS \((UPDATE .*?) RETURNING [^()]*\) "
    r"(INSERT INTO \S+ \(portfolio_id, [^)]*\)) SELECT \1\.id, .* FROM \1$"
)


def unroutable(statement: str) -> bool:
    """True if ``statement`` would not route to one distribution key and is not an exception."""
    sql = " ".join(statement.split())
    row_with_event = _ROW_WITH_EVENT.match(sql)
    if row_with_event is not None:
        return unroutable(row_with_event.group(2)) or unroutable(row_with_event.group(3))
    if any(re.search(pattern, sql) for pattern in (*NO_TABLE, *EXCEPTIONS)):
        return False
    tables = re.findall(_TABLE, sql)
    if not tables:
        return True  # touches no known table and is not listed: report it
    if sql.startswith("INSERT"):
        table = tables[0][0]
        columns = re.search(rf"INSERT INTO {_SCHEMA}{table} \(([^)]*)\)", sql)
        return columns is None or DISTRIBUTION[table] not in columns.group(1).split(", ")
    where = sql.partition(" WHERE ")[2]
    joins = sql.partition(" WHERE ")[0]
    for table, alias in tables:
        column = DISTRIBUTION[table]
        name = re.escape(alias or table)
        single = len(tables) == 1
        qualified = rf"(?:\b{name}\.|(?<![\w.]))" if single else rf"\b{name}\."
        if re.search(rf"{qualified}{column}\s*{_PINNED}", where):
            continue
        # Joined on its distribution column to another (pinned) table: co-located.
        joined = rf"\b{name}\.{column} = \w+\.(?:{'|'.join(set(DISTRIBUTION.values()))})\b"
        joined_back = rf"\w+\.(?:id|portfolio_id) = {name}\.{column}\b"
        if not single and (re.search(joined, joins) or re.search(joined_back, joins)):
            continue
        return True
    return False


@contextmanager
def every_statement_routed(engine: Engine | AsyncEngine | None) -> Iterator[list[str]]:
    """Capture every statement ``engine`` sends; on exit, fail on any ``unroutable`` one.

    Yields the captured list (so a test can see the capture is live).
    """
    assert engine is not None, "a flavour built without its engine"
    sync_engine = engine if isinstance(engine, Engine) else engine.sync_engine
    statements: list[str] = []

    def capture(*args: Any) -> None:
        statements.append(args[2])  # (connection, cursor, statement, parameters, ...)

    event.listen(sync_engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(sync_engine, "before_cursor_execute", capture)
    offending = sorted({s for s in statements if unroutable(s)})
    assert not offending, "statements that would not route to one distribution key:\n" + (
        "\n---\n".join(offending)
    )
