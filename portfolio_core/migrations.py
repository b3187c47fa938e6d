"""Upgrade and downgrade a database with the alembic scripts bundled in the package.

The library's revisions (branch ``portfolio_core``, ids ``pc0001_...``) are
recorded in their own table, :data:`VERSION_TABLE`; :func:`migrate` never
writes the application's ``alembic_version``, and reads it only while its own
table is empty, to adopt the rows earlier releases left there (see
``migration_guard``). Concurrent callers, in any number of processes, take
turns on an advisory lock.

An application with its own alembic either calls :func:`migrate` at start-up
(and passes :func:`include_name` to its autogenerate), or lists
:data:`VERSIONS_RESOURCE` in its ``version_locations`` and runs
``alembic upgrade heads``; the README shows both.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import NameFilterParentNames, NameFilterType
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from portfolio_core.errors import ConfigurationError
from portfolio_core.migration_guard import VERSION_TABLE
from portfolio_core.persistence.engine import create_engine, resolve_url
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.schema import metadata
from portfolio_core.persistence.schema_option import schema_of, validate_schema, with_schema

__all__ = [
    "BRANCH_LABEL",
    "VERSIONS_RESOURCE",
    "VERSION_TABLE",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "include_name",
    "migrate",
    "script_location",
    "upgrade_sql",
    "versions_location",
]

BRANCH_LABEL: Final = "portfolio_core"
"""The alembic branch label of the library's first revision."""

VERSIONS_RESOURCE: Final = "portfolio_core:_alembic/versions"
"""The installed package's revisions, as an alembic ``version_locations`` entry."""

# alembic's EnvironmentContext installs itself as the module-level
# `alembic.context` proxy: two threads of one process must not run env.py at once.
_ONE_AT_A_TIME = threading.Lock()


def script_location() -> Path:
    """The folder of the migration environment (env.py, versions/).

    An installed wheel carries the checkout's top-level ``alembic/`` as
    ``portfolio_core/_alembic``; an editable install uses the checkout's.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "_alembic", package.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigurationError(f"no migration scripts found next to {package}")


def versions_location() -> Path:
    """The folder of the library's revision scripts (what :data:`VERSIONS_RESOURCE` names)."""
    return script_location() / "versions"


def include_name(
    name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames
) -> bool:
    """An ``include_name`` hook for an application's autogenerate that skips the library's tables.

    For applications that call :func:`migrate` themselves: their autogenerate
    then neither drops nor creates the library's tables or its version table.
    """
    return not (type_ == "table" and (name == VERSION_TABLE or name in metadata.tables))


def alembic_config(url: str | URL | None = None) -> Config:
    """An alembic Config for the bundled scripts, pointed at ``url`` (or the environment)."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    rendered = resolve_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def _run(
    engine_or_url: Engine | str | URL | None, action: str, revision: str, schema: str | None
) -> None:
    if schema is not None:
        validate_schema(schema)  # before any connection
    owned = not isinstance(engine_or_url, Engine)
    engine = (
        create_engine(engine_or_url) if not isinstance(engine_or_url, Engine) else engine_or_url
    )
    engine = with_schema(engine, schema)
    try:
        config = alembic_config(engine.url)
        # A server that can not be reached or refuses us: a typed error, not OperationalError.
        with _ONE_AT_A_TIME, translated(), engine.begin() as connection:
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
    finally:
        if owned:
            engine.dispose()


def migrate(
    engine_or_url: Engine | str | URL | None = None,
    revision: str = "head",
    *,
    schema: str | None = None,
) -> None:
    """Upgrade the database to ``revision`` (default: the newest) with the bundled scripts.

    Safe to call from every replica at start-up: callers take turns (advisory
    lock), and the ones that come after the first find nothing left to do.
    The lock and statement timeouts hold for the migration transaction only.
    ``schema`` (default: the engine's ``schema=``, else the default schema):
    the PostgreSQL schema of the tables, trigger functions and version table,
    created if missing.
    """
    _run(engine_or_url, "upgrade", revision, schema)


def downgrade(
    engine_or_url: Engine | str | URL | None, revision: str, *, schema: str | None = None
) -> None:
    """Downgrade the database to ``revision`` (``"base"`` removes every table; not the schema)."""
    _run(engine_or_url, "downgrade", revision, schema)


def upgrade_sql(
    url: str | URL | None = None, revision: str = "head", from_revision: str | None = None
) -> str:
    """The SQL that upgrading to ``revision`` would run, without running it (offline mode)."""
    config = alembic_config(url)
    buffer = io.StringIO()
    config.output_buffer = buffer
    target = f"{from_revision}:{revision}" if from_revision else revision
    command.upgrade(config, target, sql=True)
    return buffer.getvalue()


def head_revision() -> str:
    """The newest revision of the bundled scripts."""
    head = ScriptDirectory.from_config(
        alembic_config("postgresql://localhost/unused")
    ).get_current_head()
    if head is None:
        raise ConfigurationError(f"no revisions in {versions_location()}")
    return head


def current_revision(
    engine_or_url: Engine | str | URL | None = None, *, schema: str | None = None
) -> str | None:
    """The library's revision in the database (None if never migrated): :data:`VERSION_TABLE`.

    Read in ``schema`` (default: the engine's ``schema=``, else the default schema).
    """
    owned = not isinstance(engine_or_url, Engine)
    engine = (
        create_engine(engine_or_url, pool_size=1, max_overflow=0)
        if not isinstance(engine_or_url, Engine)
        else engine_or_url
    )
    try:
        in_schema = schema_of(engine) if schema is None else validate_schema(schema)
        opts = {"version_table": VERSION_TABLE, "version_table_schema": in_schema}
        with engine.connect() as connection:
            return MigrationContext.configure(connection, opts=opts).get_current_revision()
    finally:
        if owned:
            engine.dispose()
