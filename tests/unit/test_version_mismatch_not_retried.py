"""VersionMismatchError (the caller's If-Match) ends a run at once, sync and asyncio alike.

It is a StaleDataException, but no race between writers: not retried, not
counted as a version conflict, not logged as retries exhausted; a real
conflict before it is still retried and counted.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from portfolio_core.errors import VersionMismatchError
from tests.unit.scripted_work import PID, make_service, stale, zero_metrics


def mismatch() -> VersionMismatchError:
    return VersionMismatchError("Portfolio", PID, 1, 2)


def test_the_policy_never_retries_a_version_mismatch() -> None:
    service = make_service([])

    assert not service.policy.is_retryable(mismatch())
    assert service.policy.is_retryable(stale())


@pytest.mark.parametrize("conflicts_first", [0, 1])
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_mismatch_is_raised_as_is_uncounted_and_not_exhaustion(
    flavour: str, conflicts_first: int, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []
    service = make_service(waits)
    failures = [stale() for _ in range(conflicts_first)] + [mismatch()]
    attempts: list[int] = []

    def work() -> None:
        attempts.append(1)
        raise failures[len(attempts) - 1]

    async def async_work() -> None:
        work()

    def run() -> None:
        if flavour == "sync":
            service.run(work, entity_type="Portfolio", entity_id=PID)
        else:
            asyncio.run(service.run_async(async_work, entity_type="Portfolio", entity_id=PID))

    with (
        caplog.at_level(logging.INFO, logger="portfolio_core.concurrency"),
        pytest.raises(VersionMismatchError) as raised,
    ):
        run()

    assert raised.value is failures[-1]
    assert len(attempts) == conflicts_first + 1
    assert service.get_metrics() == zero_metrics(version_conflicts=conflicts_first)
    events = [getattr(record, "event", None) for record in caplog.records]
    assert "retries_exhausted" not in events
    assert events.count("version_mismatch") == 1
