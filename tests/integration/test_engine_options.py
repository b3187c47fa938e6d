"""Engine options on a real server: connect_args merged, NullPool, a libpq host list."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from portfolio_core import create_async_engine, create_engine

MY_APP = "readme-trader"


async def _application_name(engine: AsyncEngine) -> str:
    try:
        async with engine.connect() as connection:
            query = "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            return str((await connection.execute(text(query))).scalar_one())
    finally:
        await engine.dispose()


def test_connect_args_are_merged_with_those_translated_from_the_url(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(database_url).update_query_dict(
        {"application_name": MY_APP, "sslmode": "disable"}
    )
    engine = create_async_engine(
        url, connect_args={"timeout": 20, "server_settings": {"search_path": "public"}}
    )
    seen: dict[str, Any] = {}
    connect = engine.sync_engine.dialect.connect

    def spy(*cargs: Any, **cparams: Any) -> Any:
        seen.update(cparams)
        return connect(*cargs, **cparams)

    monkeypatch.setattr(engine.sync_engine.dialect, "connect", spy)

    assert asyncio.run(_application_name(engine)) == MY_APP
    assert seen["ssl"] == "disable", seen
    assert seen["timeout"] == 20
    assert seen["server_settings"] == {"application_name": MY_APP, "search_path": "public"}


def test_null_pool_works_with_both_engines(database_url: str) -> None:
    engine = create_engine(database_url, poolclass=NullPool)
    async_engine = create_async_engine(database_url, poolclass=NullPool)

    async def select_one() -> int:
        try:
            async with async_engine.connect() as connection:
                return int((await connection.execute(text("SELECT 1"))).scalar_one())
        finally:
            await async_engine.dispose()

    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
    assert asyncio.run(select_one()) == 1


def test_a_libpq_host_list_reaches_the_host_that_answers(database_url: str) -> None:
    parsed = make_url(database_url)
    # Port 1 refuses the connection at once; libpq and asyncpg go on to the next host.
    listed = (
        f"postgresql://{parsed.username}:{parsed.password}@{parsed.host}:1,"
        f"{parsed.host}:{parsed.port}/{parsed.database}"
    )
    engine = create_engine(listed)
    async_engine = create_async_engine(listed)

    async def port() -> int:
        try:
            async with async_engine.connect() as connection:
                return int((await connection.execute(text("SHOW port"))).scalar_one())
        finally:
            await async_engine.dispose()

    with engine.connect() as connection:
        assert int(connection.execute(text("SHOW port")).scalar_one()) == parsed.port
    engine.dispose()
    assert asyncio.run(port()) == parsed.port
