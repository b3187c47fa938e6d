"""The argument parser of the ``portfolio-core`` command (see ``portfolio_core.cli``).

The demo's defaults come from :class:`~portfolio_core.demo.DemoConfig`, so the
help and a run without options say and do the same as the library's defaults.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Final, NoReturn

from portfolio_core import __version__
from portfolio_core.demo.config import DEFAULT_DURATION, DemoConfig
from portfolio_core.persistence.engine import DATABASE_URL_ENV
from portfolio_core.units import Ratio, Seconds

PROG: Final = "portfolio-core"
USAGE_ERROR: Final = 2


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


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


def _positive_seconds(text: str) -> Seconds:
    try:
        value = float(text)  # float-ok: a duration, never money
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _share(text: str) -> Ratio:
    try:
        value = float(text)  # float-ok: a probability, never money
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command (bench only lists itself: it has its own)."""
    parser = _Parser(prog=PROG, description="portfolio_core: migrations, a database, a demo.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = commands.add_parser(
        "migrate",
        help="upgrade (or downgrade) a database, or print the SQL",
        description="Upgrade the database to --revision (default head). A revision older "
        "than the database's current one (or 'base', or '-N') downgrades instead.",
    )
    migrate.add_argument("--url", help=f"database URL (default: ${DATABASE_URL_ENV})")
    migrate.add_argument(
        "--schema",
        metavar="NAME",
        help="the PostgreSQL schema of the library's tables (created if missing; "
        "default: the connection's default schema)",
    )
    migrate.add_argument(
        "--revision", metavar="REV", default="head", help="target revision (default: head)"
    )
    migrate.add_argument(
        "--sql", action="store_true", help="print the upgrade SQL from base instead of running it"
    )
    migrate.add_argument(
        "--grant-app-role",
        metavar="ROLE",
        help="after migrating, give ROLE (not the owner) exactly the DML the store needs",
    )
    migrate.add_argument(
        "--json",
        action="store_true",
        help="print the outcome as one JSON object (action, from, to, granted_role)",
    )

    db = commands.add_parser(
        "db",
        help="run an embedded PostgreSQL, migrated, until Ctrl-C",
        description="Start an embedded PostgreSQL, migrate it, print its URL, stop on "
        "Ctrl-C/SIGTERM. Without --data-dir the data lives in a temporary folder, removed.",
    )
    db.add_argument("--data-dir", metavar="DIR", type=Path, help="keep the data in this folder")
    db.add_argument(
        "--port", metavar="PORT", type=_port, help="listen on this port (default: a free one)"
    )

    demo = commands.add_parser(
        "demo",
        help="a concurrent trading simulation with fault injection",
        description="Workers (threads over OS processes) trade concurrently; the report "
        "recomputes every invariant from the database. Exit 0 only if all hold.",
    )
    demo.add_argument("--url", help="database URL (default: a private embedded PostgreSQL)")
    defaults = DemoConfig()
    demo.add_argument(
        "--workers",
        metavar="N",
        type=_positive_int,
        default=defaults.workers,
        help=f"threads in all ({defaults.workers})",
    )
    demo.add_argument(
        "--processes",
        metavar="P",
        type=_positive_int,
        default=defaults.processes,
        help=f"OS processes ({defaults.processes})",
    )
    demo.add_argument(
        "--portfolios",
        metavar="M",
        type=_positive_int,
        default=defaults.portfolios,
        help=f"portfolios ({defaults.portfolios})",
    )
    bound = demo.add_mutually_exclusive_group()
    bound.add_argument(
        "--duration",
        metavar="S",
        type=_positive_seconds,
        help=f"seconds to run ({DEFAULT_DURATION:g})",
    )
    bound.add_argument("--ops", metavar="K", type=_positive_int, help="trades to run in all")
    demo.add_argument(
        "--hot-share",
        metavar="F",
        type=_share,
        default=defaults.hot_share,
        help=f"share of trades on one portfolio ({defaults.hot_share})",
    )
    demo.add_argument("--faults", action="store_true", help="kill backends, restart the server")
    demo.add_argument(
        "--seed",
        metavar="X",
        type=int,
        default=defaults.seed,
        help=f"random seed ({defaults.seed})",
    )
    demo.add_argument(
        "--no-keys",
        dest="use_keys",
        action="store_false",
        help="no idempotency keys: a cut COMMIT stays unknown and the database settles it",
    )
    demo.add_argument(
        "--coalesce",
        action="store_true",
        help="the workers' stores coalesce concurrent trades on one portfolio (group commit)",
    )
    demo.add_argument(
        "--json",
        metavar="FILE",
        type=Path,
        dest="json_path",
        help="also write the report here as JSON ('-': to stdout, the tables to stderr)",
    )

    commands.add_parser(
        "bench", help="the concurrency benchmark (its own arguments)", add_help=False
    )
    return parser
