"""Shared tools for the concurrency tests: a second connection holding locks, and its waiters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

LOCK_ROW = text("SELECT id FROM portfolios WHERE id = :pid FOR UPDATE")


@contextmanager
def row_locked(engine: Engine, *portfolio_ids: UUID) -> Iterator[Connection]:
    """Another transaction holding FOR UPDATE locks on these portfolios for the block."""
    with engine.connect() as connection, connection.begin():
        for pid in portfolio_ids:
            connection.execute(LOCK_ROW, {"pid": pid})
        yield connection


def backend_pid(connection: Connection | Session) -> int:
    """The PostgreSQL server process serving this connection (or session)."""
    return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def wait_until_blocked(engine: Engine, pid: int, *, timeout: float = 30.0) -> None:
    """Return once PostgreSQL reports backend ``pid`` waiting for a lock.

    This waits for an observable server state (pg_blocking_pids), not for time
    to pass: the race it orders is decided by the lock manager.
    """
    deadline = time.monotonic() + timeout
    paused = threading.Event()
    with engine.connect() as connection:
        while True:
            blockers = connection.execute(
                text("SELECT cardinality(pg_blocking_pids(:pid))"), {"pid": pid}
            ).scalar_one()
            connection.rollback()
            if blockers:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"backend {pid} never waited for a lock")
            paused.wait(0.005)
