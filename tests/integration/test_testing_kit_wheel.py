"""Done-when of the testing kit: ``pip install 'portfolio-core[testing]'`` is all a service needs.

The built wheel (tests/conftest.py) goes into a fresh virtualenv with its
``testing`` extra; a service's test module, in a folder outside the checkout
and with a clean environment, uses the plugin's fixtures against the embedded
server (started and stopped by the plugin) and the strategies, and passes.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.integration.venvs import new_venv, run

SERVICE_TESTS = """
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings

import portfolio_core
from portfolio_core import Portfolio, PortfolioStore, ValidationError
from portfolio_core.testing import strategies as pcst
from portfolio_core.testing.operations import REFUSALS, execute_operation


def test_the_kit_is_the_installed_one():
    assert "site-packages" in portfolio_core.__file__


def test_store_fixture_gives_a_migrated_database(store: PortfolioStore) -> None:
    pid = store.create_portfolio("service", Decimal("10"))
    assert store.get(pid).cash_balance == Decimal("10")


@pytest.mark.asyncio
async def test_async_store_fixture(async_store) -> None:
    pid = await async_store.create_portfolio("service", Decimal("1"))
    assert (await async_store.get(pid)).version == 1


@given(pcst.invalid_positive_amounts())
def test_invalid_amounts_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        Portfolio("service").deposit(value)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(cash=pcst.amounts(), steps=pcst.operation_sequences(max_size=5))
def test_drawn_operations_apply_through_the_store(store, cash, steps) -> None:
    pid = store.create_portfolio("service", cash)
    for operation in steps:
        try:
            execute_operation(store, pid, operation)
        except REFUSALS:
            pass
    assert store.get(pid).money_invariant_holds()
"""


def test_a_service_tests_itself_with_only_the_testing_extra_installed(
    wheel: Path, tmp_path: Path
) -> None:
    python = new_venv(tmp_path / "venv", f"{wheel}[testing]")
    service = tmp_path / "service"
    service.mkdir()
    (service / "test_service.py").write_text(SERVICE_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PORTFOLIO_CORE"))}

    output = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=service, env=env)

    # No database URL in the environment: the plugin ran its own embedded server.
    assert "5 passed" in output
