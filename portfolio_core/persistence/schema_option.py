"""The ``schema=`` option: the library's tables in a PostgreSQL schema of their own.

Where it lives: the engine's ``schema_translate_map`` execution option,
``{None: schema}``, set by ``create_engine(schema=...)`` /
``create_async_engine(schema=...)`` (or :func:`with_schema` on an engine made
elsewhere). Everything that runs on that engine reads it from there: the
ORM and Core statements are qualified by SQLAlchemy at compile time (cached
per map), the library's few ``text()`` statements through :func:`in_schema`,
the migrations through :func:`schema_of`. No ``search_path`` and no startup
``options`` parameter: PgBouncer in transaction mode refuses the latter and
lets a session-level ``SET`` leak to other clients. (The migration
transaction alone sets ``search_path`` with ``SET LOCAL``, which ends with it.)

Without the option nothing changes: the statements are the very same objects
and the tables live where they always did, in the connection's default schema.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final, TypeVar

from sqlalchemy import Connection, Engine, TextClause, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from portfolio_core.errors import ValidationError

__all__ = [
    "SCHEMA_TRANSLATE_MAP",
    "in_schema",
    "qualified_name",
    "quoted_schema",
    "schema_of",
    "schema_options",
    "validate_schema",
    "with_schema",
]

SCHEMA_TRANSLATE_MAP: Final = "schema_translate_map"
"""The SQLAlchemy execution option holding the schema (under the key ``None``)."""

LIBRARY_TABLES: Final = ("portfolios", "positions", "portfolio_events", "idempotency_keys")
"""The tables :func:`in_schema` qualifies in the library's ``text()`` statements."""

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_BYTES: Final = 63  # NAMEDATALEN - 1: a longer name is silently truncated by PostgreSQL
# A table name right after one of these keywords, in the library's own SQL.
_TABLE_REFERENCE: Final = re.compile(
    r"\b(FROM|UPDATE|INTO|JOIN)\s+(" + "|".join(LIBRARY_TABLES) + r")\b"
)
_PREPARER: Final = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]

EngineT = TypeVar("EngineT", bound=Any)


def validate_schema(schema: object) -> str:
    """``schema`` if it is a plain identifier usable as the library's schema, else ValidationError.

    Letters, digits and ``_``, not starting with a digit, at most 63 bytes;
    not ``pg_*`` nor ``information_schema`` (PostgreSQL's own). Checked before
    any SQL runs; the name is quoted wherever it is written into SQL anyway.
    """
    if not isinstance(schema, str) or not _NAME.match(schema):
        raise ValidationError(
            "schema", schema, "must be an identifier: letters, digits and _, not first a digit"
        )
    if len(schema.encode()) > _MAX_BYTES:
        raise ValidationError("schema", schema, f"is longer than {_MAX_BYTES} bytes")
    if schema.lower().startswith("pg_") or schema.lower() == "information_schema":
        raise ValidationError("schema", schema, "is reserved for PostgreSQL's own schemas")
    return schema


def with_schema(engine: EngineT, schema: str | None) -> EngineT:
    """``engine`` (an Engine or AsyncEngine) with the library's tables in ``schema``.

    A copy sharing the pool (``engine.execution_options(...)``); ``None``
    returns ``engine`` itself. Every unqualified table of the statements run
    through the copy goes to ``schema``: give the application's own ORM
    tables an explicit ``schema=`` if they share it.
    """
    if schema is None:
        return engine
    return engine.execution_options(**schema_options(schema))  # type: ignore[no-any-return]


def schema_options(schema: str | None) -> dict[str, Any]:
    """The execution options putting the library's tables in ``schema`` (none for None)."""
    return {} if schema is None else {SCHEMA_TRANSLATE_MAP: {None: validate_schema(schema)}}


def schema_of(bind: Engine | Connection | Session) -> str | None:
    """The schema the library's tables are in for ``bind`` (None: the default schema)."""
    if isinstance(bind, Session):
        bind = bind.get_bind()
    translate = bind.get_execution_options().get(SCHEMA_TRANSLATE_MAP) or {}
    schema = translate.get(None)
    return None if schema is None else validate_schema(schema)


def quoted_schema(schema: str) -> str:
    """``schema`` validated and quoted as a PostgreSQL identifier, for DDL."""
    return _PREPARER.quote_schema(validate_schema(schema))


def qualified_name(table: str, schema: str | None) -> str:
    """``table``, qualified by ``schema`` when there is one, quoted as SQL needs."""
    quoted = _PREPARER.quote(table)
    return quoted if schema is None else f"{quoted_schema(schema)}.{quoted}"


def in_schema(statement: TextClause, bind: Engine | Connection | Session) -> TextClause:
    """``statement`` (the library's own ``text()`` SQL) with its tables in ``bind``'s schema.

    The same object without a schema. With one, the table after FROM,
    UPDATE, INTO or JOIN is qualified; the rewritten statement is cached.
    Statements with typed or expanding bind parameters are not supported.
    """
    schema = schema_of(bind)
    return statement if schema is None else _rewritten(statement.text, schema)


@lru_cache(maxsize=256)
def _rewritten(sql: str, schema: str) -> TextClause:
    return text(_TABLE_REFERENCE.sub(lambda m: f"{m[1]} {qualified_name(m[2], schema)}", sql))
