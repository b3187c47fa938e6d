"""``python -m portfolio_core.bench``: the library next to raw psycopg2, on one database.

Three scenarios, each run by every contender with the same worker counts in
the same process (defined once in ``scenarios``, run by threads in ``threads``;
the contenders in ``contenders``):

a. uncontended: 8 workers on 64 portfolios, ``PortfolioStore.execute(deposit)``
   vs SELECT + versioned UPDATE + COMMIT, and vs the naive ORM a user would
   write instead (``naive_orm``: Session per op, version_id_col, tenacity);
b. hot portfolio: 8 and 32 workers on ONE portfolio, each lock mode, vs
   SELECT ... FOR UPDATE + UPDATE + COMMIT, and vs the naive ORM's
   ``session.get(..., with_for_update=True)``;
c. ``update_all_prices`` on 10,000 positions vs UPDATE ... FROM (VALUES ...);
d. scaling rows: one operation's cost at a small and a large scale (64 vs
   100,000 portfolios, 1 vs 10,000 open positions, and ``get`` of all of them
   vs a raw SELECT: ``scaling``; a keyed repeat at 10 vs 10,000 events:
   ``keyed_repeat``), single thread.

With the ``async`` extra installed, the same scenarios run again on asyncio
tasks: AsyncPortfolioStore next to raw asyncpg and the naive ORM on
AsyncSession (``async_scenarios``), under the results' ``async`` key, with
the same report keys.

With no ``--url`` (and no $PORTFOLIO_CORE_DATABASE_URL) a private embedded
PostgreSQL is started and a fresh database migrated. Prints a table and writes
every number, the ratios and the targets to a JSON file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy

from portfolio_core.bench.keyed_repeat import keyed_repeat_scaling
from portfolio_core.bench.report import TARGETS, render_table, targets_met
from portfolio_core.bench.scaling import scaling_rows
from portfolio_core.bench.scenarios import QUICK, Bench, Sizes, run_scenarios
from portfolio_core.bench.threads import ThreadDriver
from portfolio_core.errors import PortfolioCoreError
from portfolio_core.migrations import migrate
from portfolio_core.persistence.engine import DATABASE_URL_ENV, create_engine, resolve_url

__all__ = ["main", "run"]

MAX_WORKERS = 32


def run(url: str, sizes: Sizes) -> dict[str, Any]:
    """Run every scenario against the (migrated) database at ``url``; return the results."""
    engine = create_engine(url, pool_size=MAX_WORKERS + 2, max_overflow=4)
    from portfolio_core.bench import raw

    try:
        with raw.connection_pool(engine.url, MAX_WORKERS) as connections:
            bench = Bench(engine, connections, sizes)
            driver = ThreadDriver(bench, MAX_WORKERS + 2)
            try:
                scenarios = run_scenarios(bench, driver)
                async_scenarios = _async_column(url, bench)
                repeat = keyed_repeat_scaling(bench, sizes.repeat_history, sizes.repeat_calls)
                scaling = scaling_rows(
                    bench, sizes.scale_portfolios, sizes.scale_positions, sizes.scale_ops
                )
            finally:
                driver.close()
                bench.close()
    finally:
        engine.dispose()
    return {
        "meta": {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "sqlalchemy": sqlalchemy.__version__,
            "cpus": os.cpu_count(),
            "quick": sizes == QUICK,
            "sizes": sizes.__dict__,
        },
        "scenarios": scenarios,
        "keyed_repeat": repeat,
        "scaling": scaling,
        **({"async": async_scenarios} if async_scenarios is not None else {}),
        "targets": TARGETS,
        "targets_met": targets_met(scenarios),
    }


def _async_column(url: str, bench: Bench) -> dict[str, Any] | None:
    """The same scenarios on asyncio tasks (AsyncPortfolioStore vs raw asyncpg), if installed."""
    if not all(importlib.util.find_spec(name) for name in ("asyncpg", "greenlet")):
        print("async column skipped: install the 'async' extra", file=sys.stderr)
        return None
    from portfolio_core.bench.async_scenarios import run_async_scenarios

    return run_async_scenarios(url, bench, MAX_WORKERS)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print a table, write the JSON file; 0 on success."""
    parser = argparse.ArgumentParser(
        prog="portfolio-core bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--url",
        help=f"database URL (default: ${DATABASE_URL_ENV}, else an embedded PostgreSQL); "
        "use a scratch database: the bench deletes its portfolios, but the append-only "
        "audit trail keeps their events",
    )
    parser.add_argument(
        "--json", default="bench-results.json", help="where to write the results (JSON)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few operations per scenario (a smoke run)"
    )
    arguments = parser.parse_args(argv)
    sizes = QUICK if arguments.quick else Sizes()
    try:
        with ExitStack() as stack:
            url = arguments.url or os.environ.get(DATABASE_URL_ENV) or None
            if url is None:
                from portfolio_core.embedded import EmbeddedPostgres

                url = stack.enter_context(EmbeddedPostgres()).url
            url = resolve_url(url).render_as_string(hide_password=False)
            migrate(url)
            results = run(url, sizes)
    except PortfolioCoreError as error:
        print(f"portfolio-core bench: error: {error}", file=sys.stderr)
        return 1
    print(render_table(results))
    Path(arguments.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {arguments.json}")
    return 0
