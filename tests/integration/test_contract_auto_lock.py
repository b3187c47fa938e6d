"""``lock="auto"``, the default of execute: optimistic first, the row lock after a conflict.

Contract cases (sync and async flavours). The race is made deterministic: the
operation itself commits a competing change on its first attempt, and each
attempt probes from another connection, with ``FOR UPDATE NOWAIT``, whether
the row is locked by the unit of work at that moment (no timing involved).
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from portfolio_core import Portfolio
from portfolio_core.store_call import LockMode
from tests.integration.contract_api import Flavour
from tests.integration.helpers import commit_deposit_behind_the_back

pytestmark = pytest.mark.asyncio

_PROBE = text("SELECT id FROM portfolios WHERE id = :pid FOR UPDATE NOWAIT")


def row_locked_by_someone_else(engine: Engine, pid: UUID) -> bool:
    """Whether another transaction holds the portfolio's row lock right now."""
    with engine.connect() as probe, probe.begin():
        try:
            probe.execute(_PROBE, {"pid": pid})
        except OperationalError as error:
            if getattr(error.orig, "pgcode", None) != "55P03":
                raise
            return True
        return False


async def _race_once(
    flavour: Flavour, engine: Engine, lock: LockMode | None
) -> tuple[list[bool], UUID]:
    """Deposit 10 while a competing deposit commits during the first attempt;
    which attempts held the row lock while the operation ran."""
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    locked: list[bool] = []

    def deposit(portfolio: Portfolio) -> None:
        locked.append(row_locked_by_someone_else(engine, pid))
        if len(locked) == 1:
            commit_deposit_behind_the_back(engine, pid)
        portfolio.deposit(Decimal("10"))

    if lock is None:
        await flavour.store.execute(pid, deposit)
    else:
        await flavour.store.execute(pid, deposit, lock=lock)
    assert (await flavour.store.get(pid)).cash_balance == Decimal("111")
    return locked, pid


async def test_the_default_retries_a_version_conflict_with_the_row_locked(
    flavour: Flavour, engine: Engine
) -> None:
    locked, _ = await _race_once(flavour, engine, lock=None)

    assert locked == [False, True]
    metrics = flavour.store.metrics()
    assert (metrics[flavour.conflict_metric], metrics["successful_retries"]) == (1, 1)


async def test_auto_by_name_behaves_as_the_default(flavour: Flavour, engine: Engine) -> None:
    locked, _ = await _race_once(flavour, engine, lock="auto")

    assert locked == [False, True]
    assert flavour.store.metrics()[flavour.conflict_metric] == 1


async def test_optimistic_stays_unlocked_on_every_attempt(flavour: Flavour, engine: Engine) -> None:
    locked, _ = await _race_once(flavour, engine, lock="optimistic")

    assert locked == [False, False]
    assert flavour.store.metrics()[flavour.conflict_metric] == 1


async def test_auto_without_conflict_never_takes_the_row_lock(
    flavour: Flavour, engine: Engine
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    locked: list[bool] = []

    def deposit(portfolio: Portfolio) -> None:
        locked.append(row_locked_by_someone_else(engine, pid))
        portfolio.deposit(Decimal("1"))

    await flavour.store.execute(pid, deposit)

    assert locked == [False]
    assert flavour.store.metrics()[flavour.conflict_metric] == 0
