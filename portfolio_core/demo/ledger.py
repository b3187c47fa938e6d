"""What the workers believe they changed, and whether the database agrees.

Every operation ends in one of three ways: it committed (its effect is
known), it failed for a definite reason (no effect), or its COMMIT was cut
and its outcome is unknown (without idempotency keys). The ledger keeps the
known effects summed per portfolio and each unknown operation's would-be
effect; :func:`explains` then asks whether SOME choice of the unknown
operations having committed accounts exactly for what the database holds.
Nothing is assumed about unknown outcomes: the database decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

MAX_STATES = 200_000
"""Beyond this many reachable sums the exact check gives way to a bounds check."""


@dataclass(frozen=True)
class Totals:
    """One portfolio's counted changes: version bumps, deposits in, withdrawals out."""

    versions: int = 0
    deposits: Decimal = Decimal(0)
    withdrawals: Decimal = Decimal(0)

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.versions + other.versions,
            self.deposits + other.deposits,
            self.withdrawals + other.withdrawals,
        )

    def __sub__(self, other: Totals) -> Totals:
        return Totals(
            self.versions - other.versions,
            self.deposits - other.deposits,
            self.withdrawals - other.withdrawals,
        )


@dataclass(frozen=True)
class Effect:
    """What one operation does when it commits.

    ``portfolios`` maps portfolio id (str) to its Totals; ``external`` is the
    money it brings in from outside (deposits) or sends out (withdrawals,
    negative); a transfer's is zero: it only moves cash between portfolios.
    """

    kind: str
    portfolios: dict[str, Totals]
    external: Decimal = Decimal(0)


@dataclass
class Ledger:
    """Known effects summed per portfolio, plus the effects of unknown-outcome operations."""

    known: dict[str, Totals] = field(default_factory=dict)
    external: Decimal = Decimal(0)
    unknown: list[Effect] = field(default_factory=list)

    def committed(self, effect: Effect) -> None:
        """Count an operation that certainly committed."""
        for pid, totals in effect.portfolios.items():
            self.known[pid] = self.known.get(pid, Totals()) + totals
        self.external += effect.external

    def outcome_unknown(self, effect: Effect) -> None:
        """Keep an operation whose COMMIT may or may not have happened."""
        self.unknown.append(effect)

    def merge(self, other: Ledger) -> None:
        """Add another worker's ledger to this one."""
        for pid, totals in other.known.items():
            self.known[pid] = self.known.get(pid, Totals()) + totals
        self.external += other.external
        self.unknown.extend(other.unknown)


@dataclass(frozen=True)
class Explanation:
    """Whether the observed values are explained, and how sure the check is."""

    holds: bool
    exact: bool
    committed_unknowns: int | None = None


def _bounds(target: Totals | Decimal, options: list[Totals] | list[Decimal]) -> bool:
    if isinstance(target, Decimal):
        values = [o for o in options if isinstance(o, Decimal)]
        low = sum((v for v in values if v < 0), Decimal(0))
        high = sum((v for v in values if v > 0), Decimal(0))
        return low <= target <= high
    parts = [o for o in options if isinstance(o, Totals)]
    return (
        0 <= target.versions <= sum(p.versions for p in parts)
        and 0 <= target.deposits <= sum((p.deposits for p in parts), Decimal(0))
        and 0 <= target.withdrawals <= sum((p.withdrawals for p in parts), Decimal(0))
    )


def explains(
    target: Totals | Decimal, options: Iterable[Totals] | Iterable[Decimal]
) -> Explanation:
    """Whether some subset of ``options`` (unknown operations) sums to ``target``.

    ``target`` is what the database shows minus what is known to have
    committed. Exact subset-sum over the reachable sums; a bounds check if
    there are too many of them (reported as not exact).
    """
    choices = list(options)
    zero: Totals | Decimal = Totals() if isinstance(target, Totals) else Decimal(0)
    # Each reachable sum remembers the fewest unknown operations that reach it.
    states: dict[object, int] = {zero: 0}
    for option in choices:
        grown = dict(states)
        for state, count in states.items():
            reached = state + option  # type: ignore[operator]
            if grown.get(reached, count + 2) > count + 1:
                grown[reached] = count + 1
        states = grown
        if len(states) > MAX_STATES:
            return Explanation(_bounds(target, choices), exact=False)  # type: ignore[arg-type]
    if target in states:
        return Explanation(True, exact=True, committed_unknowns=states[target])
    return Explanation(False, exact=True)
