"""The demo's pure parts: the seeded plan, the ledger's subset check, the report maths."""

from __future__ import annotations

import logging
import random
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portfolio_core.concurrency.metrics import log_event
from portfolio_core.demo.config import DemoConfig
from portfolio_core.demo.ledger import Effect, Ledger, Totals, explains
from portfolio_core.demo.report import percentiles
from portfolio_core.demo.stats import EventCounter
from portfolio_core.demo.trades import MIX, PlannedTrade, Planner, would_be
from portfolio_core.errors import ValidationError
from portfolio_core.store import LOCK_MODES
from portfolio_core.units import Ratio

PORTFOLIOS = [uuid.UUID(int=i + 1) for i in range(4)]


def _plan(seed: int, count: int = 200, hot_share: Ratio = 0.3) -> list[PlannedTrade]:
    planner = Planner(random.Random(seed), PORTFOLIOS, hot_share, keyed=True)
    return [planner.next() for _ in range(count)]


def test_the_same_seed_plans_the_same_operations_and_keys() -> None:
    assert _plan(7) == _plan(7)
    assert _plan(7) != _plan(8)


def test_the_plan_covers_every_kind_of_operation_and_lock_mode() -> None:
    plan = _plan(1, 500)
    assert {op.kind for op in plan} == set(MIX)
    assert {op.lock for op in plan} == set(LOCK_MODES)


def test_hot_share_one_sends_every_single_portfolio_operation_to_the_first() -> None:
    plan = _plan(3, 100, hot_share=1.0)
    assert {op.portfolio for op in plan} == {PORTFOLIOS[0]}


def test_transfers_never_target_their_source() -> None:
    transfers = [op for op in _plan(5, 500) if op.kind == "transfer"]
    assert transfers
    assert all(op.other not in (None, op.portfolio) for op in transfers)


def test_a_transfer_moves_money_between_portfolios_without_external_flow() -> None:
    op = next(op for op in _plan(5, 500) if op.kind == "transfer")
    effect = would_be(op)
    assert effect.external == 0
    assert sum(t.deposits for t in effect.portfolios.values()) == op.amount
    assert sum(t.withdrawals for t in effect.portfolios.values()) == op.amount


@given(
    st.lists(st.integers(min_value=1, max_value=500), max_size=8),
    st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_explains_finds_exactly_the_sums_some_subset_of_unknowns_reaches(
    amounts: list[int], chosen: list[bool]
) -> None:
    options = [Totals(1, deposits=Decimal(a)) for a in amounts]
    picked = [o for o, c in zip(options, chosen, strict=False) if c]
    target = sum(picked, Totals())

    verdict = explains(target, options)

    assert verdict.holds
    assert verdict.exact
    assert verdict.committed_unknowns is not None
    assert verdict.committed_unknowns <= len(picked)
    assert not explains(target + Totals(0, deposits=Decimal("0.01")), options).holds


def test_a_ledger_keeps_known_effects_summed_and_unknown_ones_apart() -> None:
    ledger = Ledger()
    ledger.committed(Effect("deposit", {"a": Totals(1, deposits=Decimal(5))}, Decimal(5)))
    ledger.committed(Effect("withdraw", {"a": Totals(1, withdrawals=Decimal(2))}, Decimal(-2)))
    ledger.outcome_unknown(Effect("deposit", {"b": Totals(1, deposits=Decimal(9))}, Decimal(9)))
    other = Ledger()
    other.committed(Effect("price", {"b": Totals(1)}))
    ledger.merge(other)

    assert ledger.known == {"a": Totals(2, Decimal(5), Decimal(2)), "b": Totals(1)}
    assert ledger.external == Decimal(3)
    assert [u.kind for u in ledger.unknown] == ["deposit"]


def test_percentiles_of_known_samples() -> None:
    values = [float(v) for v in range(1, 101)]
    result = percentiles(values)
    assert result["p50"] == pytest.approx(50.5)
    assert result["p99"] == pytest.approx(99.01)
    assert result["max"] == 100.0
    assert percentiles([])["p95"] == 0.0


def test_workers_are_spread_evenly_over_processes() -> None:
    config = DemoConfig(workers=7, processes=3, ops=10, duration=None)
    assert [config.threads_of(i) for i in range(3)] == [3, 2, 2]


def test_a_demo_needs_exactly_one_bound() -> None:
    with pytest.raises(ValidationError):
        DemoConfig(ops=10)  # duration also set by default


def test_the_event_counter_counts_retries_by_cause_from_the_concurrency_log() -> None:
    counter = EventCounter()
    counter.install()
    try:
        log_event("version_conflict", entity_id="p")
        log_event("retrying", attempt=1, error="StaleDataException")
        log_event("retrying", attempt=2, error="ConnectionLostError")
        log_event("retrying", attempt=3, error="ConnectionLostError")
        log_event("commit_outcome_resolved", committed=False)
        events, causes = counter.snapshot()
    finally:
        counter.uninstall()

    assert events["retrying"] == 3
    assert events["version_conflict"] == 1
    assert events["commit_outcome_resolved_rerun"] == 1
    assert causes == {"version conflict": 1, "connection lost": 2}
    logger = logging.getLogger("portfolio_core.concurrency")
    assert counter not in logger.handlers
    assert logger.propagate
