"""ConcurrencyService.run_async decides exactly as run: same retries, metrics and exhaustion errors.

Driver errors are built as SQLAlchemy wraps asyncpg's (a plain DBAPIError,
not OperationalError, whose ``orig`` carries ``sqlstate``); no database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.exc import DBAPIError

from portfolio_core import (
    ConcurrencyService,
    DeadlockException,
    OptimisticLockException,
    PessimisticLockException,
    ValidationError,
)


class _AsyncpgLikeError(Exception):
    """What SQLAlchemy's asyncpg adapter puts in ``DBAPIError.orig``."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def _driver_error(sqlstate: str) -> DBAPIError:
    return DBAPIError("SELECT ...", {}, _AsyncpgLikeError(sqlstate))


def _run_both(
    failures: list[BaseException], max_retries: int
) -> list[tuple[object, dict[str, int], list[float]]]:
    """Run the same scripted failures through run and run_async; what each produced."""
    outcomes: list[tuple[object, dict[str, int], list[float]]] = []
    for flavour in ("sync", "async"):
        waits: list[float] = []
        service = ConcurrencyService(max_retries=max_retries, jitter=False, sleep=waits.append)
        script = iter(failures)

        def step(script: Iterator[BaseException] = script) -> str:
            failure = next(script, None)
            if failure is not None:
                raise failure
            return "committed"

        async def async_step(step: Callable[[], str] = step) -> str:
            return step()

        outcome: object
        try:
            if flavour == "sync":
                outcome = service.run(step, entity_id="p1")
            else:
                outcome = asyncio.run(service.run_async(async_step, entity_id="p1"))
        except Exception as error:
            outcome = (type(error), getattr(error, "retries", None), type(error.__cause__))
        outcomes.append((outcome, service.get_metrics(), waits))
    return outcomes


@pytest.mark.parametrize(
    ("sqlstate", "metric"),
    [
        ("40001", "serialization_failures"),
        ("40P01", "deadlocks_detected"),
        ("55P03", "lock_timeouts"),
    ],
)
def test_classified_driver_errors_are_retried_and_counted_the_same(
    sqlstate: str, metric: str
) -> None:
    sync, async_ = _run_both([_driver_error(sqlstate), _driver_error(sqlstate)], max_retries=3)

    assert sync == async_
    outcome, metrics, waits = async_
    assert outcome == "committed"
    assert metrics[metric] == 2
    assert metrics["successful_retries"] == 1
    assert waits == [pytest.approx(0.1), pytest.approx(0.2)]


@pytest.mark.parametrize(
    ("sqlstate", "exhausted"),
    [
        ("40001", OptimisticLockException),
        ("40P01", DeadlockException),
        ("55P03", PessimisticLockException),
    ],
)
def test_exhaustion_raises_the_same_error_with_the_same_retries(
    sqlstate: str, exhausted: type[Exception]
) -> None:
    sync, async_ = _run_both([_driver_error(sqlstate)] * 5, max_retries=2)

    assert sync == async_
    outcome, metrics, _ = async_
    assert isinstance(outcome, tuple)
    assert outcome[:2] == (exhausted, 2)
    assert metrics["failed_retries"] == 1


def test_unclassified_errors_propagate_unchanged_without_retry() -> None:
    unique_violation = _driver_error("23505")
    sync, async_ = _run_both([unique_violation, ValidationError("x", 1, "bad")], max_retries=3)

    assert sync == async_
    outcome, metrics, waits = async_
    assert isinstance(outcome, tuple)
    assert outcome[0] is DBAPIError
    assert waits == []
    assert set(metrics.values()) == {0}
