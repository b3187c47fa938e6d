"""The ``portfolio-core`` command: migrate, db, demo, bench.

::

    portfolio-core migrate [--url URL] [--revision REV] [--sql]
    portfolio-core db [--data-dir DIR]
    portfolio-core demo [--url URL] [--workers N] [--processes P] [--portfolios M]
                        [--duration S | --ops K] [--hot-share F] [--faults] [--seed X]
                        [--no-keys] [--json FILE]
    portfolio-core bench [ARGS...]

Errors the user can fix (bad arguments, a bad or unreachable URL, a missing
extra) print one line on stderr and exit with status 2, never a traceback.
``demo`` exits 0 only if every invariant holds (1 otherwise); Ctrl-C exits 130
after cleaning up.
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
from pathlib import Path
from types import FrameType
from typing import Any, Final, NoReturn

from alembic.util.exc import CommandError
from sqlalchemy.exc import DBAPIError

from portfolio_core.errors import (
    ConfigurationError,
    DatabaseConnectionError,
    PortfolioCoreError,
    ValidationError,
)
from portfolio_core.persistence.engine import DATABASE_URL_ENV

PROG: Final = "portfolio-core"
USAGE_ERROR: Final = 2
INTERRUPTED: Final = 130
OFFLINE_URL: Final = "postgresql://offline/portfolio_core"
"""Dialect-only URL for ``migrate --sql`` when none is given: offline SQL needs no server."""


class UsageError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:  # float-ok: seconds
    try:
        value = float(text)  # float-ok: seconds or a share, never money
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):  # float-ok: seconds
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _share(text: str) -> float:  # float-ok: a probability
    try:
        value = float(text)  # float-ok: seconds or a share, never money
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command (bench only lists itself: it has its own)."""
    parser = _Parser(prog=PROG, description="portfolio_core: migrations, a database, a demo.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = commands.add_parser(
        "migrate",
        help="upgrade (or downgrade) a database, or print the SQL",
        description="Upgrade the database to --revision (default head). A revision older "
        "than the database's current one (or 'base', or '-N') downgrades instead.",
    )
    migrate.add_argument("--url", help=f"database URL (default: ${DATABASE_URL_ENV})")
    migrate.add_argument(
        "--revision", metavar="REV", default="head", help="target revision (default: head)"
    )
    migrate.add_argument(
        "--sql", action="store_true", help="print the upgrade SQL from base instead of running it"
    )

    db = commands.add_parser(
        "db",
        help="run an embedded PostgreSQL, migrated, until Ctrl-C",
        description="Start an embedded PostgreSQL, migrate it, print its URL, stop on "
        "Ctrl-C/SIGTERM. Without --data-dir the data lives in a temporary folder, removed.",
    )
    db.add_argument("--data-dir", metavar="DIR", type=Path, help="keep the data in this folder")

    demo = commands.add_parser(
        "demo",
        help="a concurrent trading simulation with fault injection",
        description="Workers (threads over OS processes) trade concurrently; the report "
        "recomputes every invariant from the database. Exit 0 only if all hold.",
    )
    demo.add_argument("--url", help="database URL (default: a private embedded PostgreSQL)")
    demo.add_argument(
        "--workers", metavar="N", type=_positive_int, default=8, help="threads in all (8)"
    )
    demo.add_argument(
        "--processes", metavar="P", type=_positive_int, default=2, help="OS processes (2)"
    )
    demo.add_argument(
        "--portfolios", metavar="M", type=_positive_int, default=8, help="portfolios (8)"
    )
    bound = demo.add_mutually_exclusive_group()
    bound.add_argument(
        "--duration", metavar="S", type=_positive_seconds, help="seconds to run (30)"
    )
    bound.add_argument("--ops", metavar="K", type=_positive_int, help="operations to run in all")
    demo.add_argument(
        "--hot-share",
        metavar="F",
        type=_share,
        default=0.3,
        help="share of ops on one portfolio (0.3)",
    )
    demo.add_argument("--faults", action="store_true", help="kill backends, restart the server")
    demo.add_argument("--seed", metavar="X", type=int, default=42, help="random seed (42)")
    demo.add_argument(
        "--no-keys",
        dest="use_keys",
        action="store_false",
        help="no idempotency keys: a cut COMMIT stays unknown and the database settles it",
    )
    demo.add_argument(
        "--json", metavar="FILE", type=Path, dest="json_path", help="also write the report here"
    )

    commands.add_parser(
        "bench", help="the concurrency benchmark (its own arguments)", add_help=False
    )
    return parser


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


def _current_revision(url: str) -> str | None:
    """The database's alembic revision (None if it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    from portfolio_core.persistence.engine import create_engine

    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
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
        url = arguments.url or os.environ.get(DATABASE_URL_ENV) or OFFLINE_URL
        sys.stdout.write(upgrade_sql(url, arguments.revision))
        return 0
    from portfolio_core.persistence.engine import resolve_url

    url = resolve_url(arguments.url).render_as_string(hide_password=False)
    before = _current_revision(url)
    going_down = _is_downgrade(url, before, arguments.revision)
    (downgrade if going_down else migrate)(url, arguments.revision)
    after = _current_revision(url)
    action = "downgraded" if going_down else "upgraded"
    print(f"{action} {_redacted(url)}: {before or 'empty'} -> {after or 'empty'}")
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
        server = EmbeddedPostgres(arguments.data_dir)
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
    from portfolio_core.demo import DemoConfig, run_demo

    if arguments.json_path is not None and not arguments.json_path.parent.is_dir():
        # Refused now rather than after a whole run.
        raise UsageError(f"--json: no such folder: {arguments.json_path.parent}")

    config = DemoConfig(
        url=arguments.url,
        workers=arguments.workers,
        processes=arguments.processes,
        portfolios=arguments.portfolios,
        duration=None if arguments.ops else (arguments.duration or 30.0),
        ops=arguments.ops,
        hot_share=arguments.hot_share,
        faults=arguments.faults,
        seed=arguments.seed,
        json_path=arguments.json_path,
        use_keys=arguments.use_keys,
    )
    width = None if sys.stdout.isatty() else 110
    console = Console(width=width)

    def announce(line: str) -> None:
        print(line, flush=True)

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
        config.json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if report["all_invariants_hold"] else 1


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
