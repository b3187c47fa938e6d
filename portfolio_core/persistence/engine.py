"""Engine factory: the database URL from an argument or the environment.

No engine is created at import time; callers make one and share it (an
engine is a connection pool, safe to use from many threads).
"""

from __future__ import annotations

import os
from typing import Any, Final

import sqlalchemy
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from portfolio_core.errors import ConfigurationError

DATABASE_URL_ENV: Final = "PORTFOLIO_CORE_DATABASE_URL"
"""Environment variable read when no URL is passed."""

_SYNC_DRIVER: Final = "postgresql+psycopg2"
_ASYNC_DRIVER: Final = "postgresql+asyncpg"


def resolve_url(url: str | URL | None = None, *, driver: str = _SYNC_DRIVER) -> URL:
    """The URL to use: ``url`` if given, else $PORTFOLIO_CORE_DATABASE_URL.

    A plain ``postgresql://`` (or ``postgres://``) URL is given the driver;
    any other backend is refused, since the library relies on PostgreSQL.
    """
    raw = url if url is not None else os.environ.get(DATABASE_URL_ENV)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ConfigurationError(
            f"no database URL: pass one or set {DATABASE_URL_ENV} "
            "(e.g. postgresql://user:password@localhost:5432/portfolios)"
        )
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise ConfigurationError(f"not a database URL: {raw!r}") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        if parsed.drivername in ("postgres", "postgresql"):
            parsed = parsed.set(drivername=driver)
        return parsed
    raise ConfigurationError(
        f"portfolio_core needs PostgreSQL, not {backend!r} ({parsed.render_as_string()})"
    )


def create_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for PostgreSQL through psycopg2.

    ``url`` defaults to $PORTFOLIO_CORE_DATABASE_URL. Keyword arguments go to
    :func:`sqlalchemy.create_engine` and override the defaults chosen here:
    READ COMMITTED isolation (the version check and row locks give the
    guarantees) and a pool of 10 + 10 connections.
    """
    options: dict[str, Any] = {
        "isolation_level": "READ COMMITTED",
        "pool_size": 10,
        "max_overflow": 10,
    }
    options.update(kwargs)
    return sqlalchemy.create_engine(resolve_url(url), **options)
