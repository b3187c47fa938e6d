"""A hot standby's WAL replay held and released, to make its lag deterministic.

``pg_wal_replay_pause()`` stops the standby applying WAL while it keeps
receiving it and answering queries: whatever the primary commits from then
on is invisible there until ``pg_wal_replay_resume()``. The waits below poll
the standby's own state (no sleeps standing in for ordering).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

from portfolio_core.replicas import TOKEN_QUERY, token_from
from tests.topology.servers import ReplicatedPair

DEADLINE = 60.0


def _standby_url(pair: ReplicatedPair) -> str:
    if pair.standby is None:
        raise RuntimeError("not started")
    return pair.standby.url


def _poll(url: str, query: str, argument: str | None = None) -> None:
    """Run ``query`` at ``url`` until it answers true (AssertionError at the deadline)."""
    deadline = time.monotonic() + DEADLINE
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute(query, (argument,) if argument is not None else None)
                if (cursor.fetchone() or [False])[0]:
                    return
                time.sleep(0.01)  # polling the server's state, not ordering a race
    finally:
        connection.close()
    raise AssertionError(f"never true on the standby: {query} ({argument})")


def _execute(url: str, query: str) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
    finally:
        connection.close()


def primary_insert_lsn(pair: ReplicatedPair) -> str:
    """The primary's WAL position now (``X/Y``), as the library's read tokens take it."""
    connection = psycopg2.connect(pair.primary.url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(str(TOKEN_QUERY))
            row = cursor.fetchone()
    finally:
        connection.close()
    if row is None:
        raise RuntimeError("no LSN")
    return str(token_from(row))


def wait_for_replay(pair: ReplicatedPair, lsn: str) -> None:
    """Block until the standby has replayed up to ``lsn``."""
    _poll(_standby_url(pair), "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn)


def wait_for_receipt(pair: ReplicatedPair, lsn: str) -> None:
    """Block until the standby has received (not necessarily replayed) WAL up to ``lsn``."""
    _poll(_standby_url(pair), "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", lsn)


def pause_replay(pair: ReplicatedPair) -> None:
    """Stop the standby's replay; returns once it is paused (not merely asked to)."""
    url = _standby_url(pair)
    _execute(url, "SELECT pg_wal_replay_pause()")
    _poll(url, "SELECT pg_get_wal_replay_pause_state() = 'paused'")


def resume_replay(pair: ReplicatedPair) -> None:
    """Let the standby replay again."""
    _execute(_standby_url(pair), "SELECT pg_wal_replay_resume()")


@contextmanager
def replay_paused(pair: ReplicatedPair) -> Iterator[None]:
    """The block runs with the standby caught up to now, then frozen; replay resumes after."""
    wait_for_replay(pair, primary_insert_lsn(pair))
    pause_replay(pair)
    try:
        yield
    finally:
        resume_replay(pair)
