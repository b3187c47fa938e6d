"""One ``portfolio-core bench --quick`` run on a fresh database of its own, for the tests.

The bench smoke test and the test of the bench's async column check the
same run (the ``quick_bench`` fixture in tests/conftest.py, once per
session): the async column is part of every run, and the contended
scenarios are the slowest thing the bench does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portfolio_core.bench import main
from portfolio_core.testing import databases


@dataclass(frozen=True)
class QuickBench:
    """A finished quick run: its exit code, its JSON results, the URL of its database."""

    exit_code: int
    results: dict[str, Any]
    database_url: str


@contextmanager
def quick_bench_run(server_url: str, template: str, folder: Path) -> Iterator[QuickBench]:
    """Run the quick bench on a copy of ``template``; the database is dropped after the block."""
    admin = databases.admin_engine(server_url)
    name = databases.unique_name(databases.TEST_DATABASE_PREFIX)
    databases.create_database(admin, name, template=template)
    try:
        url = databases.database_url(server_url, name)
        out = folder / "bench.json"
        exit_code = main(["--url", url, "--quick", "--json", str(out)])
        results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
        yield QuickBench(exit_code, results, url)
    finally:
        databases.drop_database(admin, name)
        admin.dispose()
