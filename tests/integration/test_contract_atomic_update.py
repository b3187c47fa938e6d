"""update_portfolio_atomic: one version-checked UPDATE, allow-listed fields, cash changes booked.

Contract cases: each runs for the sync and the async flavour (the ``flavour``
fixture, tests/integration/conftest.py; API in contract_api.py). This is the
one place update_portfolio_atomic is tested.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from portfolio_core import StaleDataException, ValidationError
from tests.integration.contract_api import Flavour

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(
    "fields",
    [
        {"version": 9},
        {"cash_balance": 5, "version": 7},
        {"realized_pnl": Decimal("1")},
        {"realized_pnl": 0},
        {"name": "x", "initial_cash": 5},
        {},
    ],
    ids=[
        "version",
        "cash_and_version",
        "realized_pnl",
        "realized_pnl_zero",
        "initial_cash",
        "nothing",
    ],
)
async def test_atomic_update_accepts_only_allow_listed_fields(
    flavour: Flavour, fields: dict[str, Any]
) -> None:
    pid = await flavour.store.create_portfolio("atomic", Decimal("100"))

    async with flavour.store.unit_of_work() as uow:
        with pytest.raises(ValidationError) as raised:
            await uow.portfolios.update_portfolio_atomic(pid, fields, expected_version=1)

    assert raised.value.field == "fields"
    assert (await flavour.store.get(pid)).version == 1


async def test_atomic_update_returns_the_new_version(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("atomic", Decimal("100"))

    async with flavour.store.unit_of_work() as uow:
        version = await uow.portfolios.update_portfolio_atomic(pid, {"name": "renamed"}, 1)
        await uow.commit()

    after = await flavour.store.get(pid)
    assert version == 2
    assert (after.name, after.version) == ("renamed", 2)


async def test_atomic_update_checks_the_expected_version_within_one_unit_of_work(
    flavour: Flavour,
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))
    async with flavour.store.unit_of_work() as uow:
        new_version = await uow.portfolios.update_portfolio_atomic(
            pid, {"cash_balance": Decimal("150")}, expected_version=1
        )
        with pytest.raises(StaleDataException) as raised:
            await uow.portfolios.update_portfolio_atomic(pid, {"name": "beta"}, expected_version=1)
        await uow.commit()

    snapshot = await flavour.store.get(pid)
    assert new_version == 2
    assert (raised.value.expected_version, raised.value.actual_version) == (1, 2)
    assert (snapshot.cash_balance, snapshot.total_deposits) == (Decimal("150"), Decimal("50"))
    assert snapshot.money_invariant_holds()


@pytest.mark.parametrize("other_commits", [1, 2])
async def test_atomic_update_on_a_moved_version_raises_stale_with_the_actual_version(
    flavour: Flavour, other_commits: int
) -> None:
    pid = await flavour.store.create_portfolio("atomic", Decimal("100"))
    for _ in range(other_commits):
        await flavour.store.execute(pid, lambda p: p.deposit(Decimal("1")))

    async with flavour.store.unit_of_work() as uow:
        with pytest.raises(StaleDataException) as raised:
            await uow.portfolios.update_portfolio_atomic(pid, {"name": "late"}, expected_version=1)

    assert (raised.value.expected_version, raised.value.actual_version) == (1, 1 + other_commits)
    assert (await flavour.store.get(pid)).name == "atomic"


async def test_atomic_cash_change_is_booked_so_the_money_invariant_holds(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("atomic", Decimal("100"))

    async with flavour.store.unit_of_work() as uow:
        await uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": Decimal("150.5")}, 1)
        await uow.commit()
    async with flavour.store.unit_of_work() as uow:
        await uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": "120"}, 2)
        await uow.commit()

    after = await flavour.store.get(pid)
    assert (after.cash_balance, after.total_deposits, after.total_withdrawals) == (
        Decimal("120"),
        Decimal("50.5"),
        Decimal("30.5"),
    )
    assert after.money_invariant_holds()
    assert after.version == 3


async def test_atomic_updates_in_one_unit_of_work_bump_once_and_book_the_cash_difference(
    flavour: Flavour,
) -> None:
    pid = await flavour.store.create_portfolio("atomic", Decimal("1000"))

    async with flavour.store.unit_of_work() as uow:
        assert await uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": 1500}, 1) == 2
        assert await uow.portfolios.update_portfolio_atomic(pid, {"name": "renamed"}, 2) == 2
        await uow.commit()

    stored = await flavour.store.get(pid)
    assert (stored.version, stored.name) == (2, "renamed")
    assert stored.total_deposits == Decimal("500")
    assert stored.money_invariant_holds()


async def test_atomic_update_keeps_the_identity_map_consistent_and_bumps_once(
    flavour: Flavour,
) -> None:
    pid = await flavour.store.create_portfolio("atomic", Decimal("100"))

    async with flavour.store.unit_of_work() as uow:
        loaded = await uow.portfolios.get(pid)
        assert await uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": "90"}, 1) == 2
        assert (loaded.cash_balance, loaded.total_withdrawals, loaded.version) == (
            Decimal("90"),
            Decimal("10"),
            2,
        )
        # A second change in the same unit of work: still one bump in all.
        assert await uow.portfolios.update_portfolio_atomic(pid, {"name": "again"}, 2) == 2
        loaded.deposit(Decimal("5"))
        await uow.commit()

    after = await flavour.store.get(pid)
    assert (after.name, after.cash_balance, after.version) == ("again", Decimal("95"), 2)
    assert after.money_invariant_holds()


async def test_atomic_update_keeps_pending_changes_to_other_fields(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("atomic", Decimal("100"))

    async with flavour.store.unit_of_work() as uow:
        loaded = await uow.portfolios.get(pid)
        loaded.deposit(Decimal("7"))
        await uow.portfolios.update_portfolio_atomic(pid, {"name": "renamed"}, 1)
        assert (loaded.name, loaded.cash_balance) == ("renamed", Decimal("107"))
        await uow.commit()

    after = await flavour.store.get(pid)
    assert (after.name, after.cash_balance, after.version) == ("renamed", Decimal("107"), 2)
    assert after.money_invariant_holds()


async def test_atomic_cash_update_over_a_pending_cash_change_is_refused(flavour: Flavour) -> None:
    pid = await flavour.store.create_portfolio("atomic", Decimal("100"))

    async with flavour.store.unit_of_work() as uow:
        (await uow.portfolios.get(pid)).deposit(Decimal("7"))
        with pytest.raises(ValidationError):
            await uow.portfolios.update_portfolio_atomic(pid, {"cash_balance": "50"}, 1)

    assert (await flavour.store.get(pid)).cash_balance == Decimal("100")
