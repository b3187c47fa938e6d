"""``python -m examples.portfolio_service``: the service on uvicorn.

The database is ``--database-url``, else $PORTFOLIO_CORE_DATABASE_URL, else
a private embedded PostgreSQL started for the run (the ``embedded`` extra)
and stopped on exit. The database is migrated first (the bundled alembic
scripts; a no-op when it is up to date).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from contextlib import ExitStack

import uvicorn

from examples.portfolio_service.app import create_app
from portfolio_core import migrate
from portfolio_core.persistence.engine import DATABASE_URL_ENV


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: where to listen and which database to use."""
    parser = argparse.ArgumentParser(prog="python -m examples.portfolio_service")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV),
        help=f"PostgreSQL URL (default ${DATABASE_URL_ENV}; none: an embedded server)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Migrate the database, then serve until interrupted."""
    arguments = parse_arguments(argv)
    with ExitStack() as stack:
        url: str | None = arguments.database_url
        if url is None:
            from portfolio_core.embedded import EmbeddedPostgres

            url = stack.enter_context(EmbeddedPostgres()).url
        migrate(url)
        uvicorn.run(create_app(url), host=arguments.host, port=arguments.port)


if __name__ == "__main__":
    main()
