"""Test harness: the database fixtures come from the project's own testing kit.

``portfolio_core.testing`` (loaded through its pytest11 entry point, and named
here too so that a stale install can not drop it) gives ``postgres_server_url``,
``template_database``, ``database_url``, ``engine``, ``store``,
``async_engine`` and ``async_store``: a private PostgreSQL for the session
(or $PORTFOLIO_CORE_DATABASE_URL), a migrated template, a fresh copy per test.
Unit tests request none of them and never start a server.

This file adds what only this project's tests need: ``database_url``
overriding the kit's (the same fresh copy of the template per test, dropped
after it, but copied while the previous test runs: tests/database_supply.py),
a ConcurrencyService that never really sleeps, a ``store`` built on it
(overriding the kit's), and two costly things done once per session and
checked by several tests: the package's wheel, and a quick run of the
benchmark.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import Engine

from portfolio_core import PortfolioStore
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.testing import databases
from portfolio_core.units import Seconds
from tests.database_supply import DatabaseSupply
from tests.integration.quick_bench import QuickBench, quick_bench_run

pytest_plugins = ["portfolio_core.testing"]


@pytest.fixture(scope="session")
def database_supply(postgres_server_url: str, template_database: str) -> Iterator[DatabaseSupply]:
    """Copies of this session's template, the next one made while a test runs."""
    with closing(DatabaseSupply(postgres_server_url, template_database)) as supply:
        yield supply


@pytest.fixture
def database_url(postgres_server_url: str, database_supply: DatabaseSupply) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own (dropped after the test)."""
    name = database_supply.take()
    try:
        yield databases.database_url(postgres_server_url, name)
    finally:
        database_supply.drop(name)


@pytest.fixture
def no_sleep() -> list[Seconds]:
    """Records the waits a retry policy asked for, without waiting."""
    return []


@pytest.fixture
def service(engine: Engine, no_sleep: list[Seconds]) -> ConcurrencyService:
    """A ConcurrencyService on this test's engine whose backoff never really sleeps."""
    return ConcurrencyService(engine, max_retries=5, sleep=no_sleep.append)


@pytest.fixture
def store(engine: Engine, service: ConcurrencyService) -> PortfolioStore:
    """A PortfolioStore on this test's database, retrying without sleeping."""
    return PortfolioStore(engine, service)


REPOSITORY = Path(__file__).resolve().parents[1]
NOT_SHIPPED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "tests",
)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's wheel, built (in an isolated build environment) from a copy of the checkout.

    Session-scoped: the wheel tests of the package and of its testing kit share one build.
    """
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(REPOSITORY, source, ignore=NOT_SHIPPED)
    command = [
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--outdir",
        str(work / "dist"),
        str(source),
    ]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"build failed:\n{result.stdout}\n{result.stderr}"
    [built] = (work / "dist").glob("portfolio_core-*.whl")
    return built


@pytest.fixture(scope="session")
def quick_bench(
    postgres_server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QuickBench]:
    """The benchmark in quick mode, run once per session on a fresh database of its own.

    Shared by the bench smoke test and the test of the bench's async column.
    """
    with quick_bench_run(
        postgres_server_url, template_database, tmp_path_factory.mktemp("bench")
    ) as run:
        yield run
