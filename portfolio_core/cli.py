"""The ``portfolio-core`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from decimal import Decimal

from portfolio_core import PortfolioStore, PositionRequest, create_engine, migrate
from portfolio_core.errors import PortfolioCoreError


def _demo(url: str | None) -> int:
    from contextlib import ExitStack

    with ExitStack() as stack:
        if url is None:
            from portfolio_core.embedded import EmbeddedPostgres

            url = stack.enter_context(EmbeddedPostgres()).url
        migrate(url)
        engine = create_engine(url)
        stack.callback(engine.dispose)
        store = PortfolioStore(engine)
        pid = store.create_portfolio("demo", Decimal("10000"))
        steps = [
            ("deposit 500", lambda p: p.deposit(Decimal("500"))),
            ("buy 10 AAPL @ 150", lambda p: p.open_position(PositionRequest("AAPL", 10, "150"))),
            ("buy 5 AAPL @ 160", lambda p: p.open_position(PositionRequest("AAPL", 5, "160"))),
            ("sell 6 AAPL @ 170", lambda p: p.close_position("AAPL", "170", 6)),
        ]
        print(f"portfolio {pid}")
        for label, step in steps:
            store.execute(pid, step, lock="wait")
            snapshot = store.get(pid)
            print(
                f"v{snapshot.version:<3} {label:<20} cash={snapshot.cash_balance} "
                f"realized={snapshot.realized_pnl} invariant={snapshot.money_invariant_holds()}"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``portfolio-core`` console script."""
    parser = argparse.ArgumentParser(prog="portfolio-core")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a small trading demo")
    demo.add_argument("--url", help="database URL (default: a private embedded PostgreSQL)")
    arguments = parser.parse_args(argv)
    try:
        return _demo(arguments.url)
    except PortfolioCoreError as error:
        print(f"portfolio-core: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
