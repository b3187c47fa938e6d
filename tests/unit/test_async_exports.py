"""The async API is exported from portfolio_core, and the sync API does not need it installed."""

from __future__ import annotations

import subprocess
import sys

import portfolio_core


def test_every_name_in_all_resolves_including_the_async_api() -> None:
    for name in ("AsyncPortfolioStore", "AsyncUnitOfWork", "AsyncPostgreSQLPortfolioRepository"):
        assert name in portfolio_core.__all__
    for name in portfolio_core.__all__:
        assert getattr(portfolio_core, name) is not None


def test_sync_api_imports_without_greenlet_and_asyncpg() -> None:
    script = (
        "import sys\n"
        "sys.modules['greenlet'] = None\n"
        "sys.modules['asyncpg'] = None\n"
        "import portfolio_core\n"
        "from portfolio_core import PortfolioStore, ConcurrencyService, create_engine\n"
        "try:\n"
        "    portfolio_core.AsyncPortfolioStore\n"
        "except ImportError:\n"
        "    print('async needs the extra')\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "async needs the extra"
