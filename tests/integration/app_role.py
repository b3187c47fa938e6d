"""A DML-only application role for one test: created, granted, and dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url

from portfolio_core import create_engine, grant_app_role


@contextmanager
def app_role_url(database_url: str, schema: str | None = None) -> Iterator[str]:
    """``database_url`` as a new role with only grant_app_role's privileges (password login).

    Roles are cluster-wide: the name is unique and the role is dropped at the end.
    ``schema``: the library's tables are in that schema (``schema=`` option).
    """
    role = f"pc_app_{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    owner = create_engine(database_url, pool_size=1, max_overflow=0, schema=schema)
    try:
        with owner.begin() as connection:
            connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        grant_app_role(owner, role)
        yield (
            make_url(database_url)
            .set(username=role, password=password)
            .render_as_string(hide_password=False)
        )
        with owner.begin() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                {"r": role},
            )
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))
    finally:
        owner.dispose()
