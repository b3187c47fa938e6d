"""Type aliases for the library's deliberate floats: durations and ratios, never money.

Money, prices and quantities are ``decimal.Decimal`` everywhere (see
``portfolio_core.domain.money``). The only floats are physical measurements
and tuning knobs; naming them says so at every signature::

    def get_portfolio_for_update(..., lock_timeout: Seconds | None = None) -> Portfolio
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Microseconds", "Milliseconds", "PerSecond", "Ratio", "Seconds"]

Seconds: TypeAlias = float
"""A duration or a clock reading in seconds (timeouts, backoff, deadlines)."""

Milliseconds: TypeAlias = float
"""A measured duration in milliseconds (latencies in reports)."""

Microseconds: TypeAlias = float
"""A measured duration in microseconds (the benchmark's CPU time per operation)."""

Ratio: TypeAlias = float
"""A dimensionless number: a probability, a fraction done, a backoff factor."""

PerSecond: TypeAlias = float
"""A measured rate (operations per second)."""
