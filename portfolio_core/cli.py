"""The ``portfolio-core`` command: migrate, db, demo, bench.

::

    portfolio-core --version
    portfolio-core migrate [--url URL] [--schema NAME] [--revision REV] [--sql]
                           [--grant-app-role ROLE] [--json]
    portfolio-core db [--data-dir DIR] [--port PORT]
    portfolio-core demo [--url URL] [--workers N] [--processes P] [--portfolios M]
                        [--duration S | --ops K] [--hot-share F] [--faults] [--seed X]
                        [--no-keys] [--json FILE | --json -]
    portfolio-core bench [ARGS...]

Errors the user can fix (bad arguments, a bad or unreachable URL, a missing
extra) print one line on stderr and exit with status 2, never a traceback.
``demo`` exits 0 only if every invariant holds (1 otherwise); Ctrl-C exits 130
after cleaning up. The arguments are parsed by ``cli_parser``; this module runs
the commands.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from types import FrameType
from typing import Any, Final

from alembic.util.exc import CommandError
from sqlalchemy.exc import DBAPIError

from portfolio_core.cli_parser import PROG, USAGE_ERROR, build_parser
from portfolio_core.demo.config import DEFAULT_DURATION, DemoConfig
from portfolio_core.errors import (
    ConfigurationError,
    DatabaseConnectionError,
    PortfolioCoreError,
    ValidationError,
)
from portfolio_core.persistence.engine import DATABASE_URL_ENV

INTERRUPTED: Final = 130
OFFLINE_URL: Final = "postgresql://offline/portfolio_core"
"""Dialect-only URL for ``migrate --sql`` when none is given: offline SQL needs no server."""


class UsageError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<the given URL>"


def _database_error(error: DBAPIError) -> UsageError:
    """A driver error at connect time, as one readable line."""
    first = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
    return UsageError(f"cannot use the database: {first}")


# -- migrate -------------------------------------------------------------------------


def _current_revision(url: str, schema: str | None = None) -> str | None:
    """The database's alembic revision (None if it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    from portfolio_core.persistence.engine import create_engine

    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(
                connection,
                opts={
                    "version_table": "portfolio_core_alembic_version",
                    "version_table_schema": schema,
                },
            ).get_current_revision()
    finally:
        engine.dispose()


def _is_downgrade(url: str, current: str | None, revision: str) -> bool:
    """Whether going from ``current`` to ``revision`` means going down."""
    from alembic.script import ScriptDirectory

    from portfolio_core.migrations import alembic_config

    if revision == "base" or revision.startswith("-"):
        return True
    if current is None or revision in ("head", "heads") or revision.startswith("+"):
        return False
    script = ScriptDirectory.from_config(alembic_config(url))
    target = script.get_revision(revision)
    if target is None:
        return False
    older = {r.revision for r in script.iterate_revisions(current, "base")} - {current}
    return target.revision in older


def _migrate(arguments: argparse.Namespace) -> int:
    from portfolio_core.migrations import downgrade, migrate, upgrade_sql

    if arguments.sql:
        if arguments.schema:
            raise UsageError("--schema is not supported with --sql (it needs a connection)")
        if arguments.json:
            raise UsageError("--json reports a migration; --sql runs none")
        url = arguments.url or os.environ.get(DATABASE_URL_ENV) or OFFLINE_URL
        sys.stdout.write(upgrade_sql(url, arguments.revision))
        return 0
    from portfolio_core.persistence.engine import resolve_url

    url = resolve_url(arguments.url).render_as_string(hide_password=False)
    schema = arguments.schema
    before = _current_revision(url, schema)
    going_down = _is_downgrade(url, before, arguments.revision)
    (downgrade if going_down else migrate)(url, arguments.revision, schema=schema)
    after = _current_revision(url, schema)
    action = "unchanged" if before == after else "downgraded" if going_down else "upgraded"
    if arguments.grant_app_role:
        from portfolio_core.persistence.roles import grant_app_role

        grant_app_role(url, arguments.grant_app_role, schema=schema)
    if arguments.json:
        outcome = {"url": _redacted(url), "action": action, "from": before, "to": after}
        print(json.dumps({**outcome, "granted_role": arguments.grant_app_role}))
        return 0
    if action == "unchanged":
        print(f"{_redacted(url)}: already at {after or 'empty'}")
    else:
        print(f"{action} {_redacted(url)}: {before or 'empty'} -> {after or 'empty'}")
    if arguments.grant_app_role:
        print(f"granted the store's privileges to role {arguments.grant_app_role!r}")
    return 0


# -- db --------------------------------------------------------------------------------


@contextmanager
def _signals_call(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``handler`` for the block (main thread only)."""
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _db(arguments: argparse.Namespace) -> int:
    from portfolio_core.embedded import EmbeddedPostgres
    from portfolio_core.migrations import migrate

    stop = threading.Event()
    with _signals_call(lambda number, frame: stop.set()):
        server = EmbeddedPostgres(arguments.data_dir, port=arguments.port)
        try:
            url = server.start()
            migrate(url)
            kept = "kept" if arguments.data_dir else "removed on exit"
            print(
                f"PostgreSQL ready at {url}\n"
                f"data dir: {server.data_dir} ({kept})\n"
                f"export {DATABASE_URL_ENV}={url}\n"
                "Ctrl-C stops it.",
                flush=True,
            )
            while not stop.wait(0.5):
                pass
        finally:
            server.stop()
    print("PostgreSQL stopped.", flush=True)
    return 0


# -- demo ------------------------------------------------------------------------------


def _demo(arguments: argparse.Namespace) -> int:
    try:
        from rich.console import Console
    except ImportError:
        raise UsageError("the demo needs rich: pip install 'portfolio-core[cli]'") from None
    from portfolio_core.demo import run_demo

    to_stdout = str(arguments.json_path) == "-"
    if arguments.json_path is not None and not arguments.json_path.parent.is_dir():
        # Refused now rather than after a whole run.
        raise UsageError(f"--json: no such folder: {arguments.json_path.parent}")

    config = DemoConfig(
        url=arguments.url,
        workers=arguments.workers,
        processes=arguments.processes,
        portfolios=arguments.portfolios,
        duration=None if arguments.ops else (arguments.duration or DEFAULT_DURATION),
        ops=arguments.ops,
        hot_share=arguments.hot_share,
        faults=arguments.faults,
        seed=arguments.seed,
        json_path=None if to_stdout else arguments.json_path,
        use_keys=arguments.use_keys,
        coalesce=arguments.coalesce,
    )
    width = None if sys.stdout.isatty() else 110
    # With --json -, stdout carries the JSON alone: the tables and notes go to stderr.
    console = Console(width=width, stderr=to_stdout)

    def announce(line: str) -> None:
        print(line, flush=True, file=sys.stderr if to_stdout else sys.stdout)

    def interrupt(number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGTERM cleans up like Ctrl-C: workers, faults, server and its folder.
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        report = run_demo(config, Console(stderr=True, width=width), announce)
    finally:
        signal.signal(signal.SIGTERM, previous)
    from portfolio_core.demo.report import render

    render(console, report)
    if config.json_path is not None:
        config.json_path.write_text(json.dumps(report, indent=2, default=_json_value) + "\n")
    elif to_stdout:
        print(json.dumps(report, indent=2, default=_json_value), flush=True)
    return 0 if report["all_invariants_hold"] else 1


def _json_value(value: object) -> str:
    """A report value JSON has no type for: a Decimal in fixed-point notation, never 0E-8."""
    return format(value, "f") if isinstance(value, Decimal) else str(value)


# -- bench -----------------------------------------------------------------------------


def _bench(argv: Sequence[str]) -> int:
    try:
        module = importlib.import_module("portfolio_core.bench")
    except ModuleNotFoundError as error:
        if error.name != "portfolio_core.bench":
            raise
        raise UsageError(
            "the benchmark is not part of this installation (no portfolio_core.bench)"
        ) from None
    bench_main: Callable[[Sequence[str] | None], int] = module.main
    return int(bench_main(list(argv)))


# -- entry point -------------------------------------------------------------------------

_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "migrate": _migrate,
    "db": _db,
    "demo": _demo,
}


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["bench"]:
        # Everything after "bench" belongs to the benchmark's own parser.
        return _bench(argv[1:])
    arguments = build_parser().parse_args(argv)
    return _COMMANDS[arguments.command](arguments)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``portfolio-core`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; cleaned up", file=sys.stderr)
        return INTERRUPTED
    except (UsageError, ConfigurationError, ValidationError, CommandError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return USAGE_ERROR
    except DBAPIError as error:
        print(f"{PROG}: error: {_database_error(error)}", file=sys.stderr)
        return USAGE_ERROR
    except DatabaseConnectionError as error:  # unreachable or refused (typed by migrate())
        print(f"{PROG}: error: cannot use the database: {error}", file=sys.stderr)
        return USAGE_ERROR
    except PortfolioCoreError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
