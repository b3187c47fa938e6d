"""After a client is done: does any server connection behind a pooler keep its session state?

A transaction pooler hands a server connection to the next client as the
last one left it. The library must leave nothing there: no setting changed
for the session (``SET`` instead of ``SET LOCAL``), no session advisory lock,
no named prepared statement, no transaction left open.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import psycopg2

_DIRECT_CHECKS = """
SELECT
  (SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
     WHERE l.locktype = 'advisory' AND d.datname = current_database()),
  (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
     AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'),
  (SELECT array_agg(pid) FROM pg_stat_activity WHERE datname = current_database()
     AND pid <> pg_backend_pid() AND backend_type = 'client backend')
"""

_PER_CONNECTION = """
SELECT pg_backend_pid(), current_setting('lock_timeout'), current_setting('statement_timeout'),
  current_setting('idle_in_transaction_session_timeout'),
  current_setting('default_transaction_isolation'),
  current_setting('default_transaction_read_only'),
  (SELECT count(*) FROM pg_prepared_statements), (SELECT count(*) FROM pg_cursors)
"""

CLEAN = ("0", "0", "0", "read committed", "off", 0, 0)
"""lock_timeout, statement_timeout, idle timeout, isolation, read only, statements, cursors."""


def _dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _wait_until_gone(direct_url: str, pids: set[int]) -> None:
    query = "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)"
    deadline = time.monotonic() + 10
    with psycopg2.connect(_dsn(direct_url)) as direct, direct.cursor() as cursor:
        while True:
            cursor.execute(query, (list(pids),))
            still_there = {row[0] for row in cursor.fetchall()}
            direct.rollback()
            if not still_there:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"server connections not reached: {still_there}")
    direct.close()


def assert_no_session_state(pooled_url: str, direct_url: str) -> None:
    """Check every server connection the pooler holds to the database of ``pooled_url``.

    The server is asked directly which connections exist; then as many clients
    open a transaction each through the pooler at once, so each holds a
    distinct server connection, and report its session state.
    """
    with psycopg2.connect(_dsn(direct_url)) as direct, direct.cursor() as cursor:
        cursor.execute(_DIRECT_CHECKS)
        row = cursor.fetchone()
    direct.close()
    if row is None:
        raise AssertionError("no answer from the server")
    advisory, open_transactions, pids = row
    assert advisory == 0, f"{advisory} advisory locks left on the server"
    assert open_transactions == 0, f"{open_transactions} transactions left open"
    server_pids = set(pids or [])
    seen: dict[int, tuple[Any, ...]] = {}
    with ExitStack() as stack:
        for _ in server_pids:
            connection = psycopg2.connect(_dsn(pooled_url))
            stack.callback(connection.close)
            cursor = stack.enter_context(connection.cursor())
            cursor.execute(_PER_CONNECTION)  # opens a transaction: the server stays ours
            fetched = cursor.fetchone()
            if fetched is not None:
                seen[int(fetched[0])] = tuple(fetched[1:])
    unreached = server_pids - set(seen)
    if unreached:
        # Closing (another pooler was stopped, say): a closed session keeps nothing.
        _wait_until_gone(direct_url, unreached)
    dirty = {pid: state for pid, state in seen.items() if state != CLEAN}
    assert not dirty, f"session state left on server connections: {dirty}"
