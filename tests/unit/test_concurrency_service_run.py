"""ConcurrencyService.run without a database: exhaustion errors, metrics, log records,
classification of driver errors. How many attempts and waits the policy allows
is tested in test_retry_policy.py, with the same scripted units of work.
"""

from __future__ import annotations

import logging
import threading
from uuid import uuid4

import pytest
from sqlalchemy.exc import OperationalError

from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    ConnectionLostError,
    DatabaseConnectionError,
    DeadlockException,
    OptimisticLockException,
    PessimisticLockException,
    SerializationFailureException,
)
from portfolio_core.persistence.errors import translated
from tests.unit.scripted_work import (
    PID,
    Always,
    DriverError,
    Script,
    connection_lost,
    deadlock,
    lock_refused,
    make_service,
    stale,
    zero_metrics,
)


def test_exhausted_version_conflicts_raise_optimistic_lock_exception_chained() -> None:
    waits: list[float] = []
    service = make_service(waits, max_retries=4)
    last: list[BaseException] = []

    def work() -> str:
        error = stale()
        last.append(error)
        raise error

    with pytest.raises(OptimisticLockException) as caught:
        service.run(work, entity_type="Portfolio", entity_id=PID)

    error = caught.value
    assert error.retries == 4
    assert (error.entity_type, error.entity_id) == ("Portfolio", PID)
    assert error.last_error is last[-1]
    assert error.__cause__ is last[-1]
    assert service.get_metrics() == zero_metrics(version_conflicts=5, failed_retries=1)


def test_exhausted_serialization_failures_raise_optimistic_lock_exception() -> None:
    service = make_service([], max_retries=2)

    with pytest.raises(OptimisticLockException) as caught:
        service.run(Always(lambda: SerializationFailureException("40001")), entity_id=PID)

    assert isinstance(caught.value.last_error, SerializationFailureException)
    assert service.get_metrics() == zero_metrics(serialization_failures=3, failed_retries=1)


def test_exhausted_deadlocks_raise_deadlock_exception_with_entities() -> None:
    service = make_service([], max_retries=2)

    with pytest.raises(DeadlockException) as caught:
        service.run(Always(deadlock), entity_id=PID)

    assert caught.value.entities == (("Portfolio", PID),)
    assert caught.value.retries == 2
    assert isinstance(caught.value.__cause__, DeadlockException)
    assert service.get_metrics() == zero_metrics(deadlocks_detected=3, failed_retries=1)


def test_connection_lost_on_every_attempt_raises_database_connection_error() -> None:
    service = make_service([], max_retries=2)

    with pytest.raises(DatabaseConnectionError) as caught:
        service.run(Always(connection_lost), entity_id=PID)

    assert not isinstance(caught.value, ConnectionLostError)
    assert caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, ConnectionLostError)


def test_scripted_sequence_gives_exact_metrics() -> None:
    service = make_service([], max_retries=3)

    assert service.run(Script(stale, stale), entity_id=PID) == "done"
    assert service.get_metrics() == zero_metrics(version_conflicts=2, successful_retries=1)

    assert service.run(Script(deadlock, lock_refused, stale), entity_id=PID) == "done"
    assert service.run(Script(), entity_id=PID) == "done"
    with pytest.raises(OptimisticLockException):
        service.run(Always(stale), entity_id=PID)

    assert service.get_metrics() == {
        "version_conflicts": 2 + 1 + 4,
        "successful_retries": 2,
        "failed_retries": 1,
        "deadlocks_detected": 1,
        "lock_timeouts": 1,
        "serialization_failures": 0,
    }
    service.reset_metrics()
    assert service.get_metrics() == zero_metrics()


def test_retry_on_version_conflict_is_run_under_the_seed_name() -> None:
    service = make_service([], max_retries=1)
    work = Script(stale, result="ok")

    assert service.retry_on_version_conflict(work, "Portfolio", PID) == "ok"
    assert work.calls == 2


def test_metrics_stay_exact_under_eight_threads() -> None:
    service = make_service([], max_retries=3)
    threads_count, runs = 8, 200
    start = threading.Barrier(threads_count)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            for _ in range(runs):
                # One conflict then success; one deadlock then a refused lock then success.
                service.run(Script(stale), entity_id=uuid4())
                service.run(Script(deadlock, lock_refused), entity_id=uuid4())
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = threads_count * runs
    assert failures == []
    assert service.get_metrics() == zero_metrics(
        version_conflicts=total,
        successful_retries=2 * total,
        deadlocks_detected=total,
        lock_timeouts=total,
    )


def test_each_concurrency_event_is_a_structured_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make_service([], max_retries=2)

    with caplog.at_level(logging.INFO, logger="portfolio_core.concurrency"):
        service.run(Script(deadlock), entity_type="Portfolio", entity_id=PID)

    events = [(getattr(r, "event", None), r) for r in caplog.records]
    names = [name for name, _ in events]
    assert names == ["deadlock_detected", "retrying", "retry_succeeded"]
    detected = events[0][1]
    assert getattr(detected, "entity_type") == "Portfolio"  # noqa: B009
    assert getattr(detected, "entity_id") == PID  # noqa: B009
    assert getattr(detected, "attempt") == 1  # noqa: B009
    assert detected.levelno == logging.WARNING
    retrying = events[1][1]
    assert (getattr(retrying, "entity_id"), getattr(retrying, "attempt")) == (PID, 1)  # noqa: B009
    assert getattr(events[2][1], "attempt") == 2  # noqa: B009


def test_log_record_carries_the_sqlstate_of_the_driver_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make_service([], max_retries=0, retry_lock_not_available=False)
    refused = lock_refused()

    with (
        caplog.at_level(logging.INFO, logger="portfolio_core.concurrency"),
        pytest.raises(PessimisticLockException),
    ):
        service.run(Always(lambda: refused), entity_type="Portfolio", entity_id=PID)

    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "lock_not_available"]
    assert getattr(record, "sqlstate") == "55P03"  # noqa: B009
    assert getattr(record, "attempt") == 1  # noqa: B009


@pytest.mark.parametrize(
    ("code", "metric", "exhausted"),
    [
        ("40P01", "deadlocks_detected", DeadlockException),
        ("40001", "serialization_failures", OptimisticLockException),
        ("55P03", "lock_timeouts", PessimisticLockException),
    ],
)
def test_raw_driver_errors_from_the_work_are_classified_and_logged_with_sqlstate(
    code: str, metric: str, exhausted: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service([], max_retries=1)
    driver_error = OperationalError("SELECT 1", {}, DriverError(code))

    with (
        caplog.at_level(logging.INFO, logger="portfolio_core.concurrency"),
        pytest.raises(exhausted) as caught,
    ):
        service.run(Always(lambda: driver_error), entity_type="Portfolio", entity_id=PID)

    assert service.get_metrics() == zero_metrics(**{metric: 2, "failed_retries": 1})
    assert caught.value.__cause__ is not None
    assert caught.value.__cause__.__cause__ is driver_error
    first = next(r for r in caplog.records if getattr(r, "attempt", None) == 1)
    assert getattr(first, "sqlstate") == code  # noqa: B009


def test_deadlock_without_entity_is_named_after_the_run_entity_when_exhausted() -> None:
    service = make_service([], max_retries=1)
    driver_error = OperationalError("UPDATE portfolios", {}, DriverError("40P01"))

    def flush_deadlock() -> str:
        # What UnitOfWork.commit raises: translated without knowing the entity.
        with translated():
            raise driver_error

    with pytest.raises(DeadlockException) as caught:
        service.run(flush_deadlock, entity_type="Portfolio", entity_id=PID)

    assert caught.value.entities == (("Portfolio", PID),)


def test_commit_outcome_unknown_is_logged_as_an_error_and_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make_service([], max_retries=3)
    work = Always(
        lambda: CommitOutcomeUnknownException("lost", entity_type="Portfolio", entity_id=PID)
    )

    with (
        caplog.at_level(logging.INFO, logger="portfolio_core.concurrency"),
        pytest.raises(CommitOutcomeUnknownException),
    ):
        service.run(work, entity_type="Portfolio", entity_id=PID)

    assert work.calls == 1
    (record,) = caplog.records
    assert getattr(record, "event") == "commit_outcome_unknown"  # noqa: B009
    assert record.levelno == logging.ERROR


def test_the_same_error_object_raised_on_each_attempt_is_counted_each_time() -> None:
    service = make_service([], max_retries=2)
    cached = stale()

    with pytest.raises(OptimisticLockException):
        service.run(Always(lambda: cached), entity_id=PID)

    assert service.get_metrics() == zero_metrics(version_conflicts=3, failed_retries=1)
