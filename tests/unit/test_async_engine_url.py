"""create_async_engine's URL handling: asyncpg driver, libpq parameters translated (no I/O)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.engine import make_url

from portfolio_core import ConfigurationError, create_async_engine
from portfolio_core.persistence.engine import _asyncpg_url


def test_plain_and_psycopg2_urls_get_the_asyncpg_driver() -> None:
    for url in (
        "postgresql://postgres@127.0.0.1:5432/db",
        "postgres://postgres@127.0.0.1:5432/db",
        "postgresql+psycopg2://postgres@127.0.0.1:5432/db",
    ):
        engine = create_async_engine(url)
        assert engine.url.drivername == "postgresql+asyncpg"
        assert engine.url.render_as_string() == "postgresql+asyncpg://postgres@127.0.0.1:5432/db"
        asyncio.run(engine.dispose())


def test_libpq_query_parameters_become_asyncpg_connect_arguments() -> None:
    url = make_url(
        "postgresql+asyncpg://u:p@db.example:5432/portfolios"
        "?sslmode=require&connect_timeout=7&application_name=trader&prepared_statement_cache_size=0"
    )

    translated, connect_args = _asyncpg_url(url)

    assert dict(translated.query) == {"prepared_statement_cache_size": "0"}
    assert connect_args == {
        "ssl": "require",
        "timeout": 7.0,
        "server_settings": {"application_name": "trader"},
    }


def test_a_url_without_libpq_parameters_is_left_alone() -> None:
    url = make_url("postgresql+asyncpg://postgres@127.0.0.1:5432/db")

    assert _asyncpg_url(url) == (url, {})


def test_a_non_postgresql_url_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        create_async_engine("sqlite+aiosqlite:///x.db")
    with pytest.raises(ConfigurationError):
        create_async_engine("postgresql+pg8000://u@h/db")


def test_a_bad_connect_timeout_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        create_async_engine("postgresql://u@h/db?connect_timeout=soon")
