"""ConcurrencyService.run: the first attempt runs outside tenacity, retries inside it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from portfolio_core import ConcurrencyService, OptimisticLockException, StaleDataException


def _flaky(failures: int, calls: list[int]) -> Callable[[], str]:
    def work() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise StaleDataException("Portfolio", "p", 1, 2)
        return "done"

    return work


def test_a_first_attempt_that_succeeds_neither_waits_nor_counts_a_retry() -> None:
    waits: list[float] = []
    service = ConcurrencyService(max_retries=2, sleep=waits.append)
    calls: list[int] = []

    assert service.run(_flaky(0, calls)) == "done"

    assert (len(calls), waits) == (1, [])
    assert service.get_metrics()["successful_retries"] == 0


def test_a_failed_first_attempt_is_retried_with_the_policys_waits() -> None:
    waits: list[float] = []
    service = ConcurrencyService(max_retries=2, sleep=waits.append)
    calls: list[int] = []

    assert service.run(_flaky(2, calls)) == "done"

    assert (len(calls), len(waits)) == (3, 2)
    metrics = service.get_metrics()
    assert (metrics["version_conflicts"], metrics["successful_retries"]) == (2, 1)


def test_max_retries_counts_the_first_attempt_too() -> None:
    waits: list[float] = []
    service = ConcurrencyService(max_retries=2, sleep=waits.append)
    calls: list[int] = []

    with pytest.raises(OptimisticLockException) as caught:
        service.run(_flaky(10, calls), entity_id="p")

    assert (len(calls), len(waits), caught.value.retries) == (3, 2, 2)
    assert isinstance(caught.value.__cause__, StaleDataException)


def test_an_error_that_is_not_retryable_propagates_after_one_attempt() -> None:
    service = ConcurrencyService(max_retries=5, sleep=lambda _: None)
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        service.run(work)
    assert len(calls) == 1
