"""Errors that mean "the primary moved" or "a pooler is in between", both drivers' shapes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.exc import DBAPIError

from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    ConfigurationError,
    ConnectionLostError,
)
from portfolio_core.persistence.errors import Failure, classify, translate
from portfolio_core.persistence.topology import pooler_options
from tests.unit.test_error_classification import asyncpg_error, psycopg2_error

MAKERS: list[Callable[[str], DBAPIError]] = [psycopg2_error, asyncpg_error]


@pytest.mark.parametrize("make", MAKERS)
def test_a_write_on_a_standby_is_a_lost_connection_or_an_unknown_outcome(
    make: Callable[[str], DBAPIError],
) -> None:
    error = make("25006")
    assert classify(error) is Failure.CONNECTION_LOST
    assert isinstance(translate(error), ConnectionLostError)
    assert isinstance(translate(error, during_commit=True), CommitOutcomeUnknownException)


@pytest.mark.parametrize("code", ["42P05", "26000"])
@pytest.mark.parametrize("make", MAKERS)
def test_a_prepared_statement_clash_is_a_configuration_error(
    make: Callable[[str], DBAPIError], code: str
) -> None:
    error = make(code)
    assert classify(error) is Failure.POOLER_STATEMENT_CLASH
    translated = translate(error, during_commit=True)
    assert isinstance(translated, ConfigurationError)
    assert "transaction_pooler=True" in str(translated)


def test_the_pooler_switch_turns_both_statement_caches_off_keeping_other_arguments() -> None:
    options = pooler_options({"connect_args": {"timeout": 5}}, True)
    assert options["connect_args"] == {
        "timeout": 5,
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
    }
    assert pooler_options({}, None) == {} == pooler_options({}, False)
