"""URL forms and options both engine factories take without connecting (no I/O)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.pool import NullPool, StaticPool

from portfolio_core import ConfigurationError, create_async_engine, create_engine
from portfolio_core.persistence.engine import resolve_url


def test_a_libpq_comma_host_list_becomes_sqlalchemy_s_multi_host_form() -> None:
    url = resolve_url("postgres://app:s,cret@db1:5432,db2:5433/portfolios?sslmode=disable")

    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.password, url.host, url.database) == (
        "app",
        "s,cret",
        None,
        "portfolios",
    )
    assert dict(url.query) == {"host": ("db1:5432", "db2:5433"), "sslmode": "disable"}


def test_a_comma_host_list_without_ports_keeps_each_host() -> None:
    assert dict(resolve_url("postgresql://app@db1,db2/portfolios").query) == {
        "host": ("db1", "db2")
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://h:p1,h:p2/db", "'h:p1' in the host list is not host or host:port"),
        ("postgresql://h1,,h2/db", "'' in the host list"),
        ("postgresql://h1:1,h2:2/db?host=h3", "hosts both in the URL's netloc and in ?host="),
    ],
)
def test_a_bad_comma_host_list_is_a_configuration_error(url: str, message: str) -> None:
    for factory in (resolve_url, create_engine, create_async_engine):
        with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
            factory(url)


def test_the_password_is_not_quoted_when_a_host_list_is_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_url("postgresql://app:hunter2@h:x,h:y/db")

    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("poolclass", [NullPool, StaticPool])
def test_a_pool_class_without_sizes_is_accepted_by_both_factories(
    poolclass: type[NullPool] | type[StaticPool],
) -> None:
    engine = create_engine("postgresql://u@h/db", poolclass=poolclass)
    async_engine = create_async_engine("postgresql://u@h/db", poolclass=poolclass)

    assert isinstance(engine.pool, poolclass)
    assert isinstance(async_engine.sync_engine.pool, poolclass)
    engine.dispose()
    asyncio.run(async_engine.dispose())


def test_pool_sizes_still_apply_to_a_queue_pool() -> None:
    engine = create_engine("postgresql://u@h/db", pool_size=3)

    assert engine.pool.size() == 3  # type: ignore[attr-defined]
    engine.dispose()
