"""DemoConfig: what one run of ``portfolio-core demo`` does."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

from portfolio_core.errors import ValidationError
from portfolio_core.units import Ratio, Seconds

DEFAULT_DURATION: Final[Seconds] = 30.0
APPLICATION_NAME_PREFIX = "portfolio-core-demo"
"""Demo connections carry ``application_name=<prefix>-<run id>``: the fault
injector terminates only those, never another client's backends."""


@dataclass(frozen=True)
class DemoConfig:
    """The knobs of one demo run (all picklable: child processes receive a copy).

    Exactly one of ``duration`` (seconds) and ``ops`` (total operations over
    every worker) bounds the run. ``hot_share`` is the fraction of operations
    sent to the first portfolio. ``faults`` starts the fault injector.
    """

    url: str | None = None
    workers: int = 8
    processes: int = 2
    portfolios: int = 8
    duration: Seconds | None = DEFAULT_DURATION
    ops: int | None = None
    hot_share: Ratio = 0.3
    faults: bool = False
    seed: int = 42
    json_path: Path | None = None
    initial_cash: Decimal = Decimal("100000")
    lock_timeout: Seconds = 1.0
    """Seconds a trade in the "wait" lock mode waits for the row lock."""
    use_keys: bool = True
    """Send idempotency keys when the store takes them (False shows the keyless path)."""
    coalesce: bool = False
    """The workers' stores coalesce (``PortfolioStore(coalesce=True)``): their trades in
    the "auto" and "wait" lock modes are batched per portfolio; the others run alone."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValidationError("workers", self.workers, "must be >= 1")
        if not 1 <= self.processes <= self.workers:
            raise ValidationError("processes", self.processes, "must be between 1 and --workers")
        if self.portfolios < 2:
            raise ValidationError("portfolios", self.portfolios, "must be >= 2 (transfers)")
        if (self.duration is None) == (self.ops is None):
            raise ValidationError("duration", self.duration, "give exactly one of duration/ops")
        if self.duration is not None and not self.duration > 0:
            raise ValidationError("duration", self.duration, "must be > 0 seconds")
        if self.ops is not None and self.ops < 1:
            raise ValidationError("ops", self.ops, "must be >= 1")
        if not 0 <= self.hot_share <= 1:
            raise ValidationError("hot_share", self.hot_share, "must be between 0 and 1")

    def threads_of(self, process_index: int) -> int:
        """How many worker threads process ``process_index`` runs (workers spread evenly)."""
        base, extra = divmod(self.workers, self.processes)
        return base + (1 if process_index < extra else 0)
