"""The invariant checks, recomputed from the database after the run.

Nothing here trusts the workers' own view of the money: balances, cost basis
and contributions are read back from PostgreSQL and compared exactly
(Decimal). The workers' ledger is only used to check that the database holds
what they committed, no more and no less (:mod:`portfolio_core.demo.ledger`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Engine, text

from portfolio_core.demo.ledger import Ledger, Totals, explains

_PORTFOLIOS: Final = text(
    """
    SELECT p.id, p.cash_balance, p.realized_pnl, p.initial_cash, p.total_deposits,
           p.total_withdrawals, p.version,
           COALESCE(SUM(x.cost_basis) FILTER (WHERE x.closed_at IS NULL), 0) AS open_cost,
           COUNT(*) FILTER (WHERE x.closed_at IS NULL AND
                            (x.quantity <= 0 OR x.cost_basis < 0)) AS bad_positions,
           COUNT(*) FILTER (WHERE 'NaN'::numeric IN (x.quantity, x.cost_basis,
                            x.current_price, x.realized_pnl, x.exit_price)) AS nan_positions
    FROM portfolios p LEFT JOIN positions x ON x.portfolio_id = p.id
    WHERE p.id = ANY(:ids)
    GROUP BY p.id
    """
)


@dataclass(frozen=True)
class Check:
    """One invariant: its name, whether it holds, and what was compared."""

    name: str
    holds: bool
    detail: str


@dataclass(frozen=True)
class Row:
    """One portfolio as read back."""

    id: str
    cash: Decimal
    realized: Decimal
    initial: Decimal
    deposits: Decimal
    withdrawals: Decimal
    version: int
    open_cost: Decimal
    bad_positions: int
    nan_positions: int

    @property
    def held(self) -> Decimal:
        """cash + open cost basis - realized P&L."""
        return self.cash + self.open_cost - self.realized

    @property
    def contributed(self) -> Decimal:
        """initial + deposits - withdrawals."""
        return self.initial + self.deposits - self.withdrawals


def read_rows(engine: Engine, portfolio_ids: list[UUID]) -> list[Row]:
    """The demo's portfolios as the database has them."""
    with engine.connect() as connection:
        result = connection.execute(_PORTFOLIOS, {"ids": portfolio_ids}).all()
    return [
        Row(str(r.id), r.cash_balance, r.realized_pnl, r.initial_cash, r.total_deposits,
            r.total_withdrawals, r.version, r.open_cost, r.bad_positions, r.nan_positions)
        for r in result
    ]  # fmt: skip


def _money_checks(rows: list[Row], expected: int) -> list[Check]:
    broken = [r.id[:8] for r in rows if r.held != r.contributed]
    held = sum((r.held for r in rows), Decimal(0))
    contributed = sum((r.contributed for r in rows), Decimal(0))
    negative = [r.id[:8] for r in rows if r.cash < 0 or r.bad_positions]
    values = [v for r in rows for v in (r.cash, r.realized, r.deposits, r.withdrawals, r.open_cost)]
    nans = sum(1 for v in values if not v.is_finite()) + sum(r.nan_positions for r in rows)
    return [
        Check(
            "money conserved per portfolio",
            len(rows) == expected and not broken,
            f"{len(rows) - len(broken)}/{expected} portfolios: "
            "cash + open cost basis - realized P&L == initial + deposits - withdrawals"
            + (f"; broken: {', '.join(broken)}" if broken else ""),
        ),
        Check(
            "money conserved in total",
            held == contributed,
            f"{held} held == {contributed} contributed",
        ),
        Check(
            "no negative cash",
            not negative,
            f"min cash {min((r.cash for r in rows), default=Decimal(0))}"
            + (f"; broken: {', '.join(negative)}" if negative else ""),
        ),
        Check("no NaN", nans == 0, f"{nans} NaN/infinite values in portfolios and positions"),
    ]


def _ledger_checks(rows: list[Row], ledger: Ledger) -> list[Check]:
    """The database holds exactly what the workers committed (unknown outcomes: either way)."""
    unexplained, inexact, committed_unknowns = [], 0, 0
    for row in rows:
        observed = Totals(row.version - 1, row.deposits, row.withdrawals)
        target = observed - ledger.known.get(row.id, Totals())
        options = [u.portfolios[row.id] for u in ledger.unknown if row.id in u.portfolios]
        verdict = explains(target, options)
        inexact += not verdict.exact
        committed_unknowns += verdict.committed_unknowns or 0
        if not verdict.holds:
            unexplained.append(f"{row.id[:8]} off by {target}")
    external = sum((r.deposits - r.withdrawals for r in rows), Decimal(0))
    flows = explains(external - ledger.external, [u.external for u in ledger.unknown])
    unknown_note = (
        f"; {len(ledger.unknown)} outcome-unknown ops; the database matches "
        f"{committed_unknowns} committed"
        if ledger.unknown
        else ""
    ) + (f"; {inexact} portfolios checked by bounds only" if inexact else "")
    return [
        Check(
            "versions == committed changes",
            not unexplained,
            f"sum(version - 1) = {sum(r.version - 1 for r in rows)}; "
            f"version bumps of committed ops = {sum(t.versions for t in ledger.known.values())}"
            + unknown_note
            + (f"; unexplained: {'; '.join(unexplained[:3])}" if unexplained else ""),
        ),
        Check(
            "external flows reconcile (transfers cancel out)",
            flows.holds,
            f"sum(deposits - withdrawals) = {external}; "
            f"committed external deposits - withdrawals = {ledger.external}",
        ),
    ]


def _event_checks(engine: Engine, rows: list[Row]) -> list[Check]:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT portfolio_id, count(*) AS n, count(DISTINCT version) AS d, "
                "max(version) AS top FROM portfolio_events WHERE portfolio_id = ANY(:ids) "
                "GROUP BY portfolio_id"
            ),
            {"ids": [UUID(r.id) for r in rows]},
        ).all()
    events = {str(r.portfolio_id): (r.n, r.d, r.top) for r in found}
    broken = [r.id[:8] for r in rows if events.get(r.id) != (r.version, r.version, r.version)]
    total = sum(n for n, _, _ in events.values())
    return [
        Check(
            "versions == events",
            not broken,
            f"{total} events for versions summing to {sum(r.version for r in rows)} "
            "(one event per committed unit of work, versions 1..v)"
            + (f"; broken: {', '.join(broken[:5])}" if broken else ""),
        )
    ]


def _expected_portfolios(kind: str) -> range:
    """How many portfolios a committed keyed operation of ``kind`` leaves an event on."""
    if kind == "transfer":
        return range(2, 3)
    # A re-pricing that matched nothing commits no change, so no event.
    return range(2) if kind == "reprice_all" else range(1, 2)


def _key_checks(engine: Engine, keys: dict[str, str]) -> list[Check]:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT idempotency_key AS key, count(*) AS n, count(DISTINCT portfolio_id) AS d "
                "FROM portfolio_events WHERE idempotency_key = ANY(:keys) GROUP BY idempotency_key"
            ),
            {"keys": list(keys)},
        ).all()
        stored = connection.execute(
            text("SELECT count(*) FROM idempotency_keys WHERE key = ANY(:keys)"),
            {"keys": list(keys)},
        ).scalar_one()
    events = {str(r.key): (int(r.n), int(r.d)) for r in found}
    # Applied once: one event per portfolio it touched (a transfer has two legs).
    twice = [k for k, (n, d) in events.items() if n != d]
    wrong = [
        k for k, kind in keys.items() if events.get(k, (0, 0))[1] not in _expected_portfolios(kind)
    ]
    return [
        Check(
            "every keyed op applied exactly once",
            not twice and not wrong and stored == len(keys),
            f"{len(keys)} keyed ops committed, {stored} keys stored; {len(events)} with events, "
            f"{len(twice)} applied twice, {len(wrong)} with missing or extra events",
        )
    ]


def check_invariants(
    engine: Engine,
    portfolio_ids: list[UUID],
    ledger: Ledger,
    keys: dict[str, str] | None,
    unexpected: list[str],
) -> list[Check]:
    """Every invariant of the run, recomputed from the database.

    ``keys`` maps each committed idempotency key to its trade's kind; None
    when the run sent no keys (then there is no exactly-once check).
    """
    rows = read_rows(engine, portfolio_ids)
    checks = _money_checks(rows, len(portfolio_ids)) + _ledger_checks(rows, ledger)
    checks += _event_checks(engine, rows)
    if keys is not None:
        checks += _key_checks(engine, keys)
    checks.append(
        Check(
            "no unexpected errors",
            not unexpected,
            f"{len(unexpected)} operations ended in an error the library did not classify"
            + (f"; first: {unexpected[0]}" if unexpected else ""),
        )
    )
    return checks


def as_json(checks: list[Check]) -> list[dict[str, Any]]:
    """The checks as JSON-ready dicts."""
    return [{"name": c.name, "holds": c.holds, "detail": c.detail} for c in checks]
