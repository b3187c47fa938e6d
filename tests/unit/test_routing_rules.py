"""The Citus routing check (tests/integration/routing_rules.py) refuses what would fan out."""

from __future__ import annotations

import pytest

from tests.integration.routing_rules import unroutable


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT portfolios.id FROM portfolios WHERE portfolios.id = $1::UUID",
        "SELECT portfolios.id FROM portfolios WHERE portfolios.id IN ($1::UUID, $2::UUID)",
        "UPDATE portfolios SET version = version + 1 WHERE id = %(pid)s RETURNING version",
        "UPDATE positions SET version=$1 WHERE positions.portfolio_id = $2 AND positions.id = $3",
        "INSERT INTO positions (portfolio_id, id, symbol) VALUES ($1, $2, $3)",
        "SELECT * FROM idempotency_keys WHERE idempotency_keys.key = $1",
        "SELECT p_1.id, positions.id FROM portfolios AS p_1 JOIN positions "
        "ON positions.portfolio_id = p_1.id WHERE p_1.id IN ($1::UUID)",
        "SELECT pg_try_advisory_xact_lock($1)",
        "SAVEPOINT sa_savepoint_1",
        "WITH bumped AS (UPDATE portfolios SET version=$3::INTEGER WHERE portfolios.id = "
        "$1::UUID AND portfolios.version = $2::INTEGER RETURNING portfolios.id, "
        "portfolios.version) INSERT INTO portfolio_events (portfolio_id, version, operations) "
        "SELECT bumped.id, bumped.version, $4::JSONB FROM bumped",
        "WITH bumped AS (UPDATE portfolios SET version=%(version)s WHERE portfolios.id = "
        "%(_row_id)s::UUID AND portfolios.version = %(_row_version)s RETURNING portfolios.id, "
        "portfolios.version) INSERT INTO portfolio_events (portfolio_id, version, operations, "
        "idempotency_key) SELECT bumped.id, bumped.version, %(_event_operations)s::JSONB AS "
        "operations, %(_event_key)s AS idempotency_key FROM bumped",
    ],
)
def test_single_key_statements_route(sql: str) -> None:
    assert not unroutable(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM positions WHERE positions.id = $1",
        "UPDATE portfolios SET name = $1 WHERE portfolios.version = $2",
        "SELECT * FROM portfolio_events WHERE portfolio_events.idempotency_key = $1",
        "DELETE FROM positions WHERE symbol = $1",
        "SELECT * FROM portfolios WHERE portfolios.id = portfolios.id",
        "INSERT INTO portfolio_events (version, operations) VALUES ($1, $2)",
        "SELECT 1",
        "WITH bumped AS (UPDATE portfolios SET version=$3 WHERE portfolios.version = $2 "
        "RETURNING portfolios.id, portfolios.version) INSERT INTO portfolio_events "
        "(portfolio_id, version, operations) SELECT bumped.id, bumped.version, $4 FROM bumped",
    ],
)
def test_statements_that_fan_out_are_reported(sql: str) -> None:
    assert unroutable(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT app.portfolios.id FROM app.portfolios WHERE app.portfolios.id = $1::UUID",
        'INSERT INTO "app".positions (portfolio_id, id) VALUES (%(portfolio_id)s, %(id)s)',
        "DELETE FROM app.idempotency_keys WHERE app.idempotency_keys.created_at < $1",
    ],
)
def test_schema_qualified_tables_are_read_the_same(sql: str) -> None:
    assert not unroutable(sql)


def test_a_schema_qualified_fan_out_is_still_reported() -> None:
    assert unroutable("SELECT * FROM app.positions WHERE app.positions.symbol = $1")
