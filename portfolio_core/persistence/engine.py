"""Engine factory: the database URL from an argument or the environment.

No engine is created at import time; callers make one and share it (an
engine is a connection pool, safe to use from many threads).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core.errors import ConfigurationError
from portfolio_core.persistence import topology
from portfolio_core.persistence.schema_option import schema_options
from portfolio_core.units import Seconds

DATABASE_URL_ENV: Final = "PORTFOLIO_CORE_DATABASE_URL"
"""Environment variable read when no URL is passed."""

_SYNC_DRIVER: Final = "postgresql+psycopg2"
_ASYNC_DRIVER: Final = "postgresql+asyncpg"

_ENGINE_DEFAULTS: Final[Mapping[str, Any]] = {
    # READ COMMITTED: the version check and row locks give the guarantees.
    "isolation_level": "READ COMMITTED",
    "pool_size": 10,
    "max_overflow": 10,
}
"""What both engine factories pass unless the caller overrides it."""


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
    masked = re.sub(r"//[^@/]*@", "//***@", str(raw))  # never echo a password
    try:
        parsed = make_url(_libpq_host_list(raw, masked) if isinstance(raw, str) else raw)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise ConfigurationError(f"not a database URL: {masked!r} ({exc})") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        if parsed.drivername in ("postgres", "postgresql"):
            parsed = parsed.set(drivername=driver)
        return parsed
    raise ConfigurationError(
        f"portfolio_core needs PostgreSQL, not {backend!r} ({parsed.render_as_string()})"
    )


_COMMA_HOSTS: Final = re.compile(
    r"(?P<head>[\w+.-]+://(?:[^@/?#]*@)?)(?P<hosts>[^@/?#]*,[^/?#]*)(?P<path>/[^?#]*)?"
    r"(?:\?(?P<query>[^#]*))?"
)
_HOST_PORT: Final = re.compile(r"(?P<host>\[[^\]]+\]|[^:\[\]]+)(?::(?P<port>[^:]*))?")


def _libpq_host_list(raw: str, masked: str) -> str:
    """libpq's ``postgresql://h1:5432,h2:5433/db`` in SQLAlchemy's multi-host form.

    SQLAlchemy parses one host and port out of the netloc (``'5432,h2:5433'``
    is no port); it takes several hosts as repeated ``?host=h1:5432&host=...``
    query parameters, for psycopg2 and asyncpg alike. Any other URL is returned
    unchanged.
    """
    match = _COMMA_HOSTS.fullmatch(raw)
    if match is None:
        return raw
    query = match["query"] or ""
    if re.search(r"(?:^|&)host=", query):
        raise ConfigurationError(f"{masked!r}: hosts both in the URL's netloc and in ?host=")
    hosts = []
    for entry in match["hosts"].split(","):
        parts = _HOST_PORT.fullmatch(entry)
        if parts is None or (parts["port"] is not None and not parts["port"].isdigit()):
            raise ConfigurationError(
                f"{masked!r}: {entry!r} in the host list is not host or host:port"
            )
        hosts.append(f"host={entry}")
    return f"{match['head']}{match['path'] or ''}?{'&'.join(hosts + ([query] if query else []))}"


def _without_pool_sizes(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults minus the pool sizes when ``poolclass`` takes none (NullPool, StaticPool...)."""
    poolclass = kwargs.get("poolclass")
    if poolclass is None or issubclass(poolclass, sqlalchemy.pool.QueuePool):
        return dict(_ENGINE_DEFAULTS)
    return {k: v for k, v in _ENGINE_DEFAULTS.items() if k not in ("pool_size", "max_overflow")}


def create_engine(
    url: str | URL | None = None,
    *,
    transaction_pooler: bool | None = None,
    schema: str | None = None,
    **kwargs: Any,
) -> Engine:
    """A SQLAlchemy engine for PostgreSQL through psycopg2.

    ``url`` defaults to $PORTFOLIO_CORE_DATABASE_URL. Keyword arguments go to
    :func:`sqlalchemy.create_engine` and override the defaults chosen here:
    READ COMMITTED isolation (the version check and row locks give the
    guarantees) and a pool of 10 + 10 connections (not passed with a
    ``poolclass`` that takes no sizes, such as ``NullPool``).

    ``transaction_pooler`` says whether a transaction-mode pooler (PgBouncer)
    sits in between; psycopg2 needs no change for one (see
    ``persistence.topology``), the keyword is taken for symmetry with
    :func:`create_async_engine`. A multi-host URL
    (``?host=a:5432&host=b:5432&target_session_attrs=read-write``) follows a
    primary that moves: a write that reaches a standby (25006) invalidates
    the pool and is retried like a lost connection.

    ``schema``: the library's tables, sequences, trigger functions and version
    table live in this PostgreSQL schema (``migrate`` creates it), for every
    store, unit of work and migration using the engine; see
    ``persistence.schema_option``. None: the connection's default schema.
    """
    in_schema = schema_options(schema)  # a bad name is refused before anything else
    engine = sqlalchemy.create_engine(resolve_url(url), **{**_without_pool_sizes(kwargs), **kwargs})
    engine.update_execution_options(**in_schema)
    topology.watch_primary(engine)
    return engine


def _asyncpg_url(url: URL) -> tuple[URL, dict[str, Any]]:
    """Move libpq-style query parameters asyncpg does not take into its connect arguments.

    asyncpg.connect() receives the URL's query as keyword arguments, and it
    knows ``ssl``/``timeout``/``server_settings``, not libpq's ``sslmode``,
    ``connect_timeout`` or ``application_name``: a URL written for psycopg2
    would otherwise fail at the first connection.
    """
    query = dict(url.query)
    connect_args: dict[str, Any] = {}
    if "sslmode" in query:
        connect_args["ssl"] = query.pop("sslmode")
    if "connect_timeout" in query:
        raw = query.pop("connect_timeout")
        try:
            timeout: Seconds = float(raw if isinstance(raw, str) else raw[0])  # float-ok: seconds
            connect_args["timeout"] = timeout
        except ValueError as exc:
            raise ConfigurationError(f"connect_timeout={raw!r} is not a number") from exc
    if "application_name" in query:
        connect_args["server_settings"] = {"application_name": query.pop("application_name")}
    return url.set(query=query), connect_args


def _merged_connect_args(translated: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's ``connect_args`` added to those translated from the URL.

    The caller's win where both name one argument; ``server_settings`` are
    merged setting by setting, so an ``application_name`` from the URL stays
    next to the caller's other settings.
    """
    merged = {**translated, **given}
    if "server_settings" in translated and "server_settings" in given:
        merged["server_settings"] = {**translated["server_settings"], **given["server_settings"]}
    return merged


def create_async_engine(
    url: str | URL | None = None,
    *,
    transaction_pooler: bool | None = None,
    schema: str | None = None,
    **kwargs: Any,
) -> AsyncEngine:
    """An asyncio SQLAlchemy engine for PostgreSQL through asyncpg (the ``async`` extra).

    The same URL resolution as :func:`create_engine` (a plain ``postgresql://``
    URL gets the ``postgresql+asyncpg`` driver; libpq's ``sslmode``,
    ``connect_timeout`` and ``application_name`` are translated for asyncpg)
    and the same defaults: READ COMMITTED and a pool of 10 + 10 connections.
    Keyword arguments go to :func:`sqlalchemy.ext.asyncio.create_async_engine`;
    a ``connect_args`` given there is merged into the arguments translated
    from the URL, not put in their place.

    ``transaction_pooler=True``: a transaction-mode pooler (PgBouncer) sits in
    between, asyncpg's statement caches are turned off. ``None`` (default):
    each new connection is checked, and one that goes through a pooler raises
    ConfigurationError rather than risk another client's prepared statement.
    ``False``: no check (direct, or a session-mode pooler). Multi-host URLs
    work as for :func:`create_engine`; "no host is read-write" while a standby
    is being promoted is a refused connection (SQLSTATE 08001), retried.
    ``schema`` as for :func:`create_engine` (no ``options`` startup parameter,
    which asyncpg does not take and PgBouncer refuses).
    """
    in_schema = schema_options(schema)
    try:
        from sqlalchemy.ext import asyncio as sa_asyncio
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigurationError(
            "the async API needs the 'async' extra: pip install 'portfolio-core[async]'"
        ) from exc
    resolved = resolve_url(url, driver=_ASYNC_DRIVER)
    if resolved.drivername in (_SYNC_DRIVER, "postgresql+psycopg"):
        # One URL (say, $PORTFOLIO_CORE_DATABASE_URL) may serve both engines.
        resolved = resolved.set(drivername=_ASYNC_DRIVER)
    if resolved.drivername != _ASYNC_DRIVER:
        raise ConfigurationError(
            f"create_async_engine needs the asyncpg driver, not {resolved.drivername!r}"
        )
    resolved, translated = _asyncpg_url(resolved)
    options: dict[str, Any] = {**_without_pool_sizes(kwargs), **kwargs}
    connect_args = _merged_connect_args(translated, kwargs.get("connect_args") or {})
    if connect_args:
        options["connect_args"] = connect_args
    options = topology.pooler_options(options, transaction_pooler)
    engine = sa_asyncio.create_async_engine(resolved, **options)
    engine.sync_engine.update_execution_options(**in_schema)
    check_pooler = transaction_pooler is None

    def connect(dialect: Any, connection_record: Any, cargs: Any, cparams: Any) -> Any:
        return _connect_or_sqlstate_08001(
            dialect, connection_record, cargs, cparams, check_pooler=check_pooler
        )

    sqlalchemy.event.listen(engine.sync_engine, "do_connect", connect)
    topology.watch_primary(engine.sync_engine)
    return engine


def _connect_or_sqlstate_08001(
    dialect: Any, connection_record: Any, cargs: Any, cparams: Any, *, check_pooler: bool = False
) -> Any:
    """Connect; a refused or timed-out connection becomes a DBAPI error with SQLSTATE 08001.

    psycopg2 reports a server it cannot reach as OperationalError; asyncpg
    raises the bare OSError (or TimeoutError), which SQLAlchemy passes on
    unwrapped, so the retry policy and commit outcome resolution would not
    see a lost connection. SQLSTATE 08001 (sqlclient_unable_to_establish_
    sqlconnection) makes it one, classified like psycopg2's; so does "no host
    matches target_session_attrs" (a primary being replaced). With
    ``check_pooler`` a pooler in between is refused (``topology``).
    """
    try:
        connection = dialect.connect(*cargs, **cparams)
    except Exception as error:
        if not isinstance(error, OSError | TimeoutError) and not topology.no_read_write_host(error):
            raise
        failure = dialect.loaded_dbapi.OperationalError(f"cannot connect to PostgreSQL: {error}")
        failure.pgcode = failure.sqlstate = "08001"
        raise failure from error
    if check_pooler:
        topology.refuse_hidden_pooler_async(connection)
    return connection
