"""The ``schema=`` option without a server: names checked, the text SQL qualified (or untouched)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, TextClause

from portfolio_core import ValidationError, create_async_engine, create_engine
from portfolio_core.persistence import repository, sql_updates, stale_versions
from portfolio_core.persistence.schema_option import (
    in_schema,
    qualified_name,
    schema_of,
    validate_schema,
    with_schema,
)

URL = "postgresql://user@127.0.0.1:1/unused"  # never connected to
LIBRARY_TEXT_SQL: list[TextClause] = [
    sql_updates._SELECT_VERSION,
    sql_updates._SELECT_VERSION_FOR_UPDATE,
    sql_updates._BUMP_VERSION,
    sql_updates._REPRICE_ROWS,
    sql_updates._REPRICE,
    sql_updates._REPRICED_SYMBOLS,
    repository._EXISTS,
    *stale_versions._VERSION_QUERIES.values(),
]
UNQUALIFIED = re.compile(r"(?<![.\w])(portfolios|positions|portfolio_events|idempotency_keys)\b")


@pytest.fixture
def plain() -> Iterator[Engine]:
    engine = create_engine(URL)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", ["trading", "Trading_2", "_x", "public", "a" * 63])
def test_plain_identifiers_are_accepted(name: str) -> None:
    assert validate_schema(name) == name


@pytest.mark.parametrize("name", ["", "2x", "a-b", "a.b", 'a"b', "pg_toast", "information_schema"])
def test_anything_else_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        validate_schema(name)
    assert refused.value.field == "schema"


def test_without_the_option_the_statements_are_the_same_objects(plain: Engine) -> None:
    assert schema_of(plain) is None
    assert with_schema(plain, None) is plain
    for statement in LIBRARY_TEXT_SQL:
        assert in_schema(statement, plain) is statement


def test_with_the_option_every_library_table_in_text_sql_is_qualified(plain: Engine) -> None:
    engine = with_schema(plain, "trading")
    assert schema_of(engine) == "trading"
    assert schema_of(plain) is None  # a copy: the original engine is left as it was
    for statement in LIBRARY_TEXT_SQL:
        rewritten = in_schema(statement, engine).text
        assert "trading." in rewritten
        assert UNQUALIFIED.findall(rewritten) == [], rewritten
        assert in_schema(statement, engine) is in_schema(statement, engine)  # cached


def test_a_name_that_needs_quoting_is_quoted() -> None:
    assert qualified_name("portfolios", "Trading") == '"Trading".portfolios'
    assert qualified_name("portfolios", None) == "portfolios"


def test_both_engine_factories_carry_the_schema() -> None:
    engine = create_engine(URL, schema="trading")
    async_engine = create_async_engine(URL, schema="trading")
    try:
        assert schema_of(engine) == "trading"
        assert schema_of(async_engine.sync_engine) == "trading"
    finally:
        engine.dispose()
