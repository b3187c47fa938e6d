"""The ``portfolio-core demo`` engine: a concurrent trading simulation with faults.

Worker threads spread over OS processes run a seeded mix of trading
operations through :class:`~portfolio_core.PortfolioStore` while a fault
injector kills backends and restarts the server; afterwards every invariant
is recomputed from the database. Needs the ``cli`` extra (rich).

* config.py: DemoConfig; operations.py: the mix and how each operation runs;
* workload.py: worker threads and processes; stats.py: their counters;
* faults.py: the fault injector; ledger.py + invariants.py: the checks;
* report.py: the report; runner.py: puts it all together.
"""

from portfolio_core.demo.config import DemoConfig
from portfolio_core.demo.runner import DemoFailedError, run_demo

__all__ = ["DemoConfig", "DemoFailedError", "run_demo"]
