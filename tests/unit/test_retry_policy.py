"""RetryPolicy through ConcurrencyService.run: how many attempts, how long each wait,
which failures are retried, which settings are refused, how the policy is given.

The "units of work" are scripted callables (tests/unit/scripted_work.py); the
sleep is injected, so nothing ever waits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from portfolio_core.concurrency import ConcurrencyService, RetryPolicy
from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    InsufficientFundsError,
    OptimisticLockException,
    PessimisticLockException,
    ValidationError,
)
from tests.unit.scripted_work import (
    PID,
    Always,
    FakeClock,
    Script,
    connection_lost,
    deadlock,
    lock_refused,
    make_service,
    stale,
    zero_metrics,
)


@pytest.mark.parametrize("max_retries", [0, 1, 3, 7])
def test_max_retries_n_means_n_plus_one_attempts(max_retries: int) -> None:
    waits: list[float] = []
    service = make_service(waits, max_retries=max_retries)
    work = Always(stale)

    with pytest.raises(OptimisticLockException):
        service.run(work, entity_id=PID)

    assert work.calls == max_retries + 1
    assert len(waits) == max_retries


def test_full_jitter_waits_stay_within_the_exponential_bound() -> None:
    random.seed(20261125)  # tenacity draws from the module-level generator
    waits: list[float] = []
    service = make_service(waits, max_retries=8, base_delay=0.1, backoff_factor=2.0, max_delay=1.0)

    with pytest.raises(OptimisticLockException):
        service.run(Always(stale), entity_id=PID)

    bounds = [min(1.0, 0.1 * 2.0**k) for k in range(8)]
    assert len(waits) == 8
    assert all(0 <= wait <= bound for wait, bound in zip(waits, bounds, strict=True))
    # Full jitter: the waits are spread out, not pinned to the bound.
    assert any(wait < bound for wait, bound in zip(waits, bounds, strict=True))


def test_without_jitter_waits_are_exactly_exponential_and_capped() -> None:
    waits: list[float] = []
    service = make_service(
        waits, max_retries=5, base_delay=0.5, backoff_factor=3.0, max_delay=5.0, jitter=False
    )

    with pytest.raises(OptimisticLockException):
        service.run(Always(stale), entity_id=PID)

    assert waits == pytest.approx([0.5, 1.5, 4.5, 5.0, 5.0])


def test_deadline_stops_retrying_when_the_next_wait_would_pass_it() -> None:
    waits: list[float] = []
    # The first wait (1 s) already passes the 0.5 s deadline: no retry happens.
    service = make_service(waits, max_retries=10, base_delay=1.0, jitter=False, deadline=0.5)
    work = Always(stale)

    with pytest.raises(OptimisticLockException) as caught:
        service.run(work, entity_id=PID)

    assert work.calls == 1
    assert waits == []
    assert caught.value.retries == 0


def test_deadline_allows_the_retries_that_fit_in_it() -> None:
    clock = FakeClock()
    waits = clock.waits
    # Waits 1 and 2 fit; after them (3 s gone) the next wait of 4 would end at 7 > 5.
    policy = RetryPolicy(
        max_retries=10, base_delay=1.0, jitter=False, deadline=5.0, sleep=clock.sleep, clock=clock
    )
    service = ConcurrencyService(policy=policy)
    work = Always(stale)

    with pytest.raises(OptimisticLockException):
        service.run(work, entity_id=PID)

    assert waits == [1.0, 2.0]
    assert work.calls == 3


def test_refused_locks_are_retried_when_the_policy_says_so() -> None:
    waits: list[float] = []
    service = make_service(waits, max_retries=3, retry_lock_not_available=True)
    work = Always(lock_refused)

    with pytest.raises(PessimisticLockException) as caught:
        service.run(work, entity_id=PID)

    assert work.calls == 4
    assert caught.value.retries == 3
    assert caught.value.sqlstate == "55P03"
    assert isinstance(caught.value.__cause__, PessimisticLockException)
    assert service.get_metrics() == zero_metrics(lock_timeouts=4, failed_retries=1)


def test_refused_locks_propagate_at_once_when_the_policy_does_not_retry_them() -> None:
    waits: list[float] = []
    service = make_service(waits, max_retries=3, retry_lock_not_available=False)
    work = Always(lock_refused)

    with pytest.raises(PessimisticLockException) as caught:
        service.run(work, entity_id=PID)

    assert work.calls == 1
    assert waits == []
    assert caught.value.retries == 0
    assert service.get_metrics() == zero_metrics(lock_timeouts=1)


def test_connection_lost_once_is_retried_transparently() -> None:
    service = make_service([], max_retries=2)
    work = Script(connection_lost)

    assert service.run(work, entity_id=PID) == "done"
    assert work.calls == 2
    assert service.get_metrics() == zero_metrics(successful_retries=1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ValidationError("amount", Decimal("-1"), "must be > 0"),
        lambda: InsufficientFundsError(PID, Decimal("10"), Decimal("1")),
        lambda: CommitOutcomeUnknownException("lost during COMMIT", entity_type="Portfolio"),
        lambda: KeyError("a bug in the operation"),
    ],
    ids=["validation", "insufficient-funds", "commit-outcome-unknown", "other"],
)
def test_non_retryable_errors_propagate_at_once(make: Callable[[], BaseException]) -> None:
    waits: list[float] = []
    service = make_service(waits, max_retries=5)
    work = Always(make)

    with pytest.raises(type(make())) as caught:
        service.run(work, entity_id=PID)

    assert type(caught.value) is type(make())
    assert work.calls == 1
    assert waits == []
    assert service.get_metrics() == zero_metrics()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_retries", -1),
        ("max_retries", True),
        ("base_delay", -0.1),
        ("max_delay", -1.0),
        ("backoff_factor", 0.5),
        ("deadline", 0.0),
    ],
)
def test_policy_rejects_nonsense_settings(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        RetryPolicy(**{field: value})  # type: ignore[arg-type]

    assert caught.value.field == field


def _scripted_outcome(service: ConcurrencyService) -> tuple[object, ...]:
    """What one scripted run does: its result or exhaustion, calls and metrics."""
    random.seed(20261130)  # the same jittered waits for every service compared
    work = Script(stale, deadlock, lock_refused, connection_lost, stale, stale)
    outcome: object
    try:
        outcome = service.run(work, entity_id=PID)
    except Exception as error:
        outcome = (type(error), getattr(error, "retries", None))
    return outcome, work.calls, service.get_metrics()


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"max_retries": 8, "base_delay": 0.5, "backoff_factor": 3.0, "max_delay": 5.0},
        {"max_retries": 8, "jitter": False, "deadline": None},
        {"max_retries": 3, "retry_lock_not_available": False},
    ],
    ids=["defaults", "backoff", "no-jitter-no-deadline", "locks-not-retried"],
)
def test_policy_argument_and_the_seed_keywords_make_the_same_service(
    settings: dict[str, Any],
) -> None:
    keyword_waits: list[float] = []
    policy_waits: list[float] = []
    by_keywords = ConcurrencyService(sleep=keyword_waits.append, **settings)
    by_policy = ConcurrencyService(policy=RetryPolicy(sleep=policy_waits.append, **settings))

    assert by_keywords.policy == by_policy.policy
    assert _scripted_outcome(by_keywords) == _scripted_outcome(by_policy)
    assert keyword_waits == policy_waits


async def _no_wait(seconds: float) -> None:
    """An async sleep that returns at once."""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_retries", 3),  # even the default value: given is given
        ("base_delay", 0.2),
        ("max_delay", 1.0),
        ("backoff_factor", 3.0),
        ("jitter", False),
        ("deadline", None),
        ("retry_lock_not_available", False),
        ("sleep", lambda seconds: None),
        ("async_sleep", _no_wait),
    ],
)
def test_a_policy_and_loose_policy_keywords_together_are_a_type_error(
    field: str, value: object
) -> None:
    with pytest.raises(TypeError, match=f"not both .*{field}"):
        ConcurrencyService(policy=RetryPolicy(), **{field: value})  # type: ignore[arg-type]


def test_the_seed_keyword_sleep_none_means_the_default_sleep() -> None:
    service = ConcurrencyService(sleep=None, max_retries=2)  # type: ignore[arg-type]

    assert service.policy.sleep is time.sleep
    assert service.policy == RetryPolicy(max_retries=2)
