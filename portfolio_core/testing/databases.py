"""Throw-away databases for tests: a server, a migrated template, copies of it.

Plain functions with no pytest in them, used by the plugin's fixtures and
usable from any other harness. ``CREATE DATABASE ... TEMPLATE`` copies a
migrated database file by file, which is much faster than migrating each
test's database. Names carry the pytest-xdist worker id, so workers sharing
one server never touch each other's template or databases.
"""

from __future__ import annotations

import os
import uuid
from typing import Final

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from portfolio_core.migrations import migrate
from portfolio_core.persistence.engine import create_engine

__all__ = [
    "TEMPLATE_PREFIX",
    "TEST_DATABASE_PREFIX",
    "admin_engine",
    "create_database",
    "create_template",
    "database_url",
    "drop_database",
    "unique_name",
    "worker_id",
]

TEMPLATE_PREFIX: Final = "pc_template"
"""Start of every template database's name."""
TEST_DATABASE_PREFIX: Final = "pc_test"
"""Start of every per-test database's name."""


def worker_id() -> str:
    """The pytest-xdist worker running this process (``gw0``...), or ``main`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def unique_name(prefix: str) -> str:
    """A database name no other worker or run will pick: prefix, worker, process, random."""
    # PostgreSQL cuts identifiers at 63 bytes; this stays far below.
    return f"{prefix}_{worker_id()}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


def admin_engine(server_url: str) -> Engine:
    """A one-connection AUTOCOMMIT engine for CREATE/DROP DATABASE (no transaction allowed)."""
    return create_engine(server_url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)


def database_url(server_url: str, name: str) -> str:
    """``server_url`` pointed at database ``name`` (password kept, ready to connect)."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def create_database(admin: Engine, name: str, template: str | None = None) -> None:
    """CREATE DATABASE ``name``, a copy of ``template`` if given (nobody may be connected to it)."""
    statement = f'CREATE DATABASE "{name}"'
    if template is not None:
        statement += f' TEMPLATE "{template}"'
    with admin.connect() as connection:
        connection.execute(text(statement))


def drop_database(admin: Engine, name: str) -> None:
    """DROP DATABASE ``name`` if it exists, closing any connection still open on it."""
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def create_template(admin: Engine, server_url: str) -> str:
    """Create a database migrated to head and return its name (copy it with create_database)."""
    name = unique_name(TEMPLATE_PREFIX)
    create_database(admin, name)
    try:
        # migrate() disposes of its engine: no connection is left to block the copies.
        migrate(database_url(server_url, name))
    except BaseException:
        drop_database(admin, name)
        raise
    return name
