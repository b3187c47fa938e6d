"""Databases migrated by an earlier release: the library's "0001"/"0002" in alembic_version.

Earlier releases ran the same DDL but recorded it as "0001"/"0002" in the
default ``alembic_version``. Such a database is rebuilt here from today's
migrations by moving the bookkeeping back to where those releases kept it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import text

from portfolio_core import PortfolioStore, create_engine, migrate
from portfolio_core.migrations import (
    VERSION_TABLE,
    current_revision,
    downgrade,
    head_revision,
)
from tests.integration.app_alembic import LIBRARY_TABLES, alembic_version_rows
from tests.integration.helpers import empty_database, table_names

FIRST = "pc0001_portfolios"


@pytest.fixture
def empty_url(postgres_server_url: str) -> Iterator[str]:
    """A database with no tables at all."""
    with empty_database(postgres_server_url) as url:
        yield url


EARLIER_RELEASE_HEAD = "pc0002_audit_idempotency"
"""What an earlier release's "0002" held: the schema up to the audit trail."""


def _as_an_earlier_release_left_it(url: str, rows: set[str]) -> None:
    """Drop the library's version table; record ``rows`` in alembic_version instead."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))
            connection.execute(
                text(
                    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
                )
            )
            for row in sorted(rows):
                connection.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": row})
    finally:
        engine.dispose()


def test_a_database_at_old_0002_is_adopted_once_and_keeps_its_data(
    empty_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    migrate(empty_url, EARLIER_RELEASE_HEAD)
    engine = create_engine(empty_url, pool_size=1, max_overflow=0)
    try:
        pid = PortfolioStore(engine).create_portfolio("kept", Decimal("10"))
        _as_an_earlier_release_left_it(empty_url, {"0002"})

        with caplog.at_level(logging.WARNING, logger="portfolio_core.migration_guard"):
            migrate(empty_url)
        migrate(empty_url)

        assert current_revision(empty_url) == head_revision()
        assert alembic_version_rows(empty_url) == set()  # emptied, left in place
        assert PortfolioStore(engine).get(pid).cash_balance == Decimal("10")
    finally:
        engine.dispose()
    assert "moved portfolio_core revision 0002" in caplog.text


def test_a_database_at_old_0001_is_adopted_then_upgraded_to_head(empty_url: str) -> None:
    migrate(empty_url, FIRST)
    _as_an_earlier_release_left_it(empty_url, {"0001"})

    migrate(empty_url)

    assert current_revision(empty_url) == head_revision()
    assert table_names(empty_url) >= LIBRARY_TABLES
    assert alembic_version_rows(empty_url) == set()


def test_alembic_version_holding_other_rows_too_is_left_as_it_was(
    empty_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    migrate(empty_url, EARLIER_RELEASE_HEAD)
    _as_an_earlier_release_left_it(empty_url, {"0002", "a1b2c3d4e5f6"})

    with caplog.at_level(logging.WARNING, logger="portfolio_core.migration_guard"):
        migrate(empty_url)

    assert current_revision(empty_url) == head_revision()
    assert alembic_version_rows(empty_url) == {"0002", "a1b2c3d4e5f6"}
    assert "left as it was" in caplog.text


def test_an_app_own_0002_without_the_library_tables_is_not_taken(empty_url: str) -> None:
    # The app's alembic got to "0002" first; the library's tables do not exist:
    # earlier releases skipped their first revision here and broke the app's alembic.
    _as_an_earlier_release_left_it(empty_url, {"0002"})

    migrate(empty_url)
    migrate(empty_url)

    assert table_names(empty_url) >= LIBRARY_TABLES
    assert current_revision(empty_url) == head_revision()
    assert alembic_version_rows(empty_url) == {"0002"}


def test_downgrading_to_base_after_adoption_removes_the_library_tables(empty_url: str) -> None:
    migrate(empty_url, EARLIER_RELEASE_HEAD)
    _as_an_earlier_release_left_it(empty_url, {"0002"})
    migrate(empty_url)

    downgrade(empty_url, "base")

    assert not table_names(empty_url) & LIBRARY_TABLES
    assert current_revision(empty_url) is None
