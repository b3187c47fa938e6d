"""The Prometheus collector over real store calls, sync and async, on a real registry.

Conflicts are forced (another writer commits between the load and the
commit), so the retries counted are exactly known.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Connection, Engine

from portfolio_core import (
    ConcurrencyService,
    OptimisticLockException,
    PortfolioStore,
    VersionMismatchError,
)
from portfolio_core.observability import listeners, remove_listener
from portfolio_core.observability.prometheus import instrument_prometheus
from portfolio_core.units import Seconds
from tests.integration.contract_api import Flavour
from tests.integration.helpers import LOCK_ROW
from tests.integration.observability_tools import Overtaken


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """A fresh registry with a PrometheusListener subscribed for the test."""
    registry = CollectorRegistry()
    listener = instrument_prometheus(registry)
    assert listener in listeners()
    yield registry
    remove_listener(listener)
    assert listener not in listeners()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 for a label set never counted."""
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.asyncio
async def test_a_conflict_then_success_counts_one_retry_and_two_attempts(
    flavour: Flavour, engine: Engine, registry: CollectorRegistry
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    assert await flavour.store.execute(pid, Overtaken(engine, conflicts=1)) == 2

    assert value(registry, "portfolio_core_calls_total", operation="execute", outcome="ok") == 1
    assert (
        value(
            registry, "portfolio_core_retries_total", operation="execute", cause="version_conflict"
        )
        == 1
    )
    attempts = {"operation": "execute"}
    assert value(registry, "portfolio_core_call_attempts_count", **attempts) == 1
    assert value(registry, "portfolio_core_call_attempts_sum", **attempts) == 2
    assert value(registry, "portfolio_core_call_attempts_bucket", le="1.0", **attempts) == 0
    assert value(registry, "portfolio_core_call_attempts_bucket", le="2.0", **attempts) == 1
    assert value(registry, "portfolio_core_call_duration_seconds_count", **attempts) == 1
    assert (
        value(registry, "portfolio_core_calls_total", operation="create_portfolio", outcome="ok")
        == 1
    )
    # The library's own counters are unchanged by the collector.
    assert flavour.store.metrics()["successful_retries"] == 1


@pytest.mark.asyncio
async def test_exhausted_retries_and_a_version_mismatch_are_outcomes(
    flavour: Flavour, engine: Engine, registry: CollectorRegistry
) -> None:
    pid = await flavour.store.create_portfolio("alpha", Decimal("100"))

    with pytest.raises(OptimisticLockException):
        await flavour.store.execute(pid, Overtaken(engine, conflicts=1_000), lock="optimistic")
    version = (await flavour.store.get(pid)).version
    with pytest.raises(VersionMismatchError):
        await flavour.store.execute(
            pid, lambda p: p.deposit(Decimal("1")), expected_version=version - 1
        )

    calls = "portfolio_core_calls_total"
    assert value(registry, calls, operation="execute", outcome="retries_exhausted") == 1
    assert value(registry, calls, operation="execute", outcome="error:VersionMismatchError") == 1
    assert value(registry, calls, operation="execute", outcome="ok") == 0
    # max_retries=5: five retries, all of the exhausted call; none for the mismatch.
    assert (
        value(
            registry, "portfolio_core_retries_total", operation="execute", cause="version_conflict"
        )
        == 5
    )
    assert value(registry, "portfolio_core_call_attempts_sum", operation="execute") == 6 + 1
    assert value(registry, "portfolio_core_call_attempts_count", operation="execute") == 2


def test_a_refused_nowait_lock_is_retried_and_counted_by_its_cause(
    engine: Engine, registry: CollectorRegistry
) -> None:
    holder: list[Connection] = []

    def sleep(_: Seconds) -> None:
        # The backoff after the refused NOWAIT is where the lock holder lets go.
        holder.pop().commit()

    store = PortfolioStore(engine, ConcurrencyService(engine, max_retries=5, sleep=sleep))
    pid = store.create_portfolio("alpha", Decimal("100"))
    connection = engine.connect()
    try:
        connection.begin()
        connection.execute(LOCK_ROW, {"pid": pid})
        holder.append(connection)
        store.execute(pid, lambda p: p.withdraw(Decimal("5")), lock="nowait")
    finally:
        connection.close()

    assert (
        value(
            registry,
            "portfolio_core_retries_total",
            operation="execute",
            cause="lock_not_available",
        )
        == 1
    )
    assert value(registry, "portfolio_core_calls_total", operation="execute", outcome="ok") == 1
    assert value(registry, "portfolio_core_call_attempts_sum", operation="execute") == 2
    assert store.metrics()["lock_timeouts"] == 1
