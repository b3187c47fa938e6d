"""The ``portfolio-core demo`` engine: a concurrent trading simulation with faults.

Worker threads spread over OS processes run a seeded mix of planned trades
through :class:`~portfolio_core.PortfolioStore` while a fault injector kills
backends and restarts the server; afterwards every invariant is recomputed
from the database. Needs the ``cli`` extra (rich).

* config.py: DemoConfig; trades.py: PlannedTrade, the mix, and run_trade;
* workload.py: worker threads and processes; stats.py: their counters;
* faults.py: the fault injector; ledger.py + invariants.py: the checks;
* report.py: the report; runner.py: puts it all together.
"""

from typing import TYPE_CHECKING, Any

from portfolio_core.demo.config import DemoConfig

if TYPE_CHECKING:
    from portfolio_core.demo.runner import DemoFailedError, run_demo

__all__ = ["DemoConfig", "DemoFailedError", "run_demo"]


def __getattr__(name: str) -> Any:
    # The runner needs rich (the cli extra); DemoConfig alone does not, so the
    # command line can read its defaults on an installation without rich.
    if name in ("DemoFailedError", "run_demo"):
        from portfolio_core.demo import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
