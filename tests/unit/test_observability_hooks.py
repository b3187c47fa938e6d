"""The hooks around the retry loop, sync and asyncio alike, with scripted units of work.

No database: ``observed_call`` is what the stores wrap each call in, and the
retry loop (ConcurrencyService.run / run_async) reports the attempts. The
integration tests drive the same hooks through real stores.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from portfolio_core.errors import OptimisticLockException, VersionMismatchError
from portfolio_core.observability import (
    AttemptFinished,
    AttemptStarted,
    BaseStoreListener,
    StoreCallFinished,
    StoreCallInfo,
    add_listener,
    listeners,
    remove_listener,
)
from portfolio_core.observability.prometheus import PrometheusListener
from portfolio_core.observability.tracking import observed_call
from tests.integration.observability_tools import Recorder, subscribed
from tests.unit.scripted_work import PID, Always, Script, deadlock, make_service, stale


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    with subscribed(recorder):
        yield recorder


def run_observed(flavour: str, work: Callable[[], str], max_retries: int = 3) -> str:
    """``work`` run as the store runs a call: observed, retried by a service."""
    service = make_service([], max_retries=max_retries)

    async def async_work() -> str:
        return work()

    with observed_call("execute", PID, lock_mode="optimistic"):
        if flavour == "sync":
            return service.run(work, entity_id=PID)
        return asyncio.run(service.run_async(async_work, entity_id=PID))


FLAVOURS = pytest.mark.parametrize("flavour", ["sync", "async"])


@FLAVOURS
def test_retries_are_reported_in_order_with_their_causes(flavour: str, recorder: Recorder) -> None:
    assert run_observed(flavour, Script(stale, deadlock)) == "done"

    names = [name for name, _ in recorder.events]
    assert names == [
        "call_started",
        *["attempt_started", "attempt_finished"] * 3,
        "call_finished",
    ]
    info = recorder.events[0][1]
    assert isinstance(info, StoreCallInfo)
    assert (info.operation, info.portfolio_ids, info.lock_mode) == ("execute", (PID,), "optimistic")
    started = [e for _, e in recorder.events if isinstance(e, AttemptStarted)]
    assert [(e.attempt, e.retry_cause) for e in started] == [
        (1, None),
        (2, "version_conflict"),
        (3, "deadlock"),
    ]
    ended = recorder.attempts("execute")
    assert [(e.outcome, e.cause) for e in ended] == [
        ("error:StaleDataException", "version_conflict"),
        ("error:DeadlockException", "deadlock"),
        ("ok", None),
    ]
    [finished] = recorder.finished("execute")
    assert (finished.outcome, finished.attempts) == ("ok", 3)
    assert finished.retry_causes == ("version_conflict", "deadlock")
    assert finished.error is None
    assert all(event.call is info for _, event in recorder.events[1:])  # type: ignore[union-attr]


@FLAVOURS
def test_exhaustion_and_a_mismatch_are_call_outcomes(flavour: str, recorder: Recorder) -> None:
    with pytest.raises(OptimisticLockException):
        run_observed(flavour, Always(stale), max_retries=2)
    with pytest.raises(VersionMismatchError):
        run_observed(flavour, Always(lambda: VersionMismatchError("Portfolio", PID, 1, 2)))

    exhausted, mismatch = recorder.finished("execute")
    assert (exhausted.outcome, exhausted.attempts) == ("retries_exhausted", 3)
    assert exhausted.retry_causes == ("version_conflict", "version_conflict")
    assert isinstance(exhausted.error, OptimisticLockException)
    assert (mismatch.outcome, mismatch.attempts, mismatch.retry_causes) == (
        "error:VersionMismatchError",
        1,
        (),
    )
    assert recorder.attempts("execute")[-1].cause is None


class Raising(BaseStoreListener):
    def call_started(self, call: StoreCallInfo) -> None:
        raise RuntimeError("listener bug")

    def attempt_started(self, attempt: AttemptStarted) -> None:
        raise RuntimeError("listener bug")

    def attempt_finished(self, attempt: AttemptFinished) -> None:
        raise RuntimeError("listener bug")

    def call_finished(self, call: StoreCallFinished) -> None:
        raise RuntimeError("listener bug")


@FLAVOURS
def test_a_raising_listener_is_logged_and_breaks_nothing(
    flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    with (
        subscribed(Raising()),
        subscribed(recorder),
        caplog.at_level(logging.WARNING, logger="portfolio_core.observability"),
    ):
        assert run_observed(flavour, Script(stale)) == "done"

    assert [e.outcome for e in recorder.finished("execute")] == ["ok"]
    failures = [r for r in caplog.records if r.name == "portfolio_core.observability"]
    assert len(failures) == 1 + 2 * 2 + 1  # every hook of a call of two attempts
    assert all(r.levelno == logging.WARNING and r.exc_info for r in failures)


def test_without_a_listener_or_outside_a_store_call_nothing_is_reported(
    recorder: Recorder,
) -> None:
    remove_listener(recorder)
    run_observed("sync", Script(stale))
    add_listener(recorder)
    make_service([]).run(Script(stale), entity_id=PID)  # a retry loop of the caller's own

    assert recorder.events == []


def test_a_retry_loop_inside_an_attempt_is_not_the_calls(recorder: Recorder) -> None:
    inner = make_service([])

    def work() -> str:
        return inner.run(Script(stale), entity_id=PID)

    run_observed("sync", work)

    assert [e.attempt for e in recorder.attempts("execute")] == [1]


def test_listeners_are_added_once_and_removed_by_the_remover() -> None:
    listener = BaseStoreListener()
    remove = add_listener(listener)
    add_listener(listener)
    assert [known for known in listeners() if known is listener] == [listener]
    remove()
    remove()  # removing twice is harmless
    assert listener not in listeners()


def test_prometheus_metric_names_follow_the_namespace_and_register_once() -> None:
    registry = CollectorRegistry()
    PrometheusListener(registry, namespace="trading")
    names = {metric.name for metric in registry.collect()}
    assert names == {
        "trading_calls",
        "trading_retries",
        "trading_call_duration_seconds",
        "trading_call_attempts",
    }
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusListener(registry, namespace="trading")


EXHAUST_RETRIES = """
import logging, sys
import portfolio_core
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.errors import OptimisticLockException, StaleDataException
if sys.argv[1] == "without-null-handler":
    logging.getLogger("portfolio_core").handlers.clear()
def work():
    raise StaleDataException("Portfolio", 1, 1, 2)
try:
    ConcurrencyService(max_retries=1, sleep=lambda seconds: None).run(work)
except OptimisticLockException:
    print("exhausted")
"""


@pytest.mark.parametrize(
    ("mode", "leaks"), [("as-installed", False), ("without-null-handler", True)]
)
def test_a_warning_does_not_reach_the_stderr_of_a_service_without_logging(
    mode: str, leaks: bool
) -> None:
    # A fresh interpreter: pytest's own log capture would hide the last-resort handler.
    result = subprocess.run(
        [sys.executable, "-c", EXHAUST_RETRIES, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "exhausted\n"
    # Without the NullHandler Python's last-resort handler prints the warning
    # (the control case shows the check can fail).
    assert ("retries_exhausted" in result.stderr) is leaks
    if not leaks:
        assert result.stderr == ""


def test_the_core_imports_neither_opentelemetry_nor_prometheus_client() -> None:
    probe = (
        "import sys, portfolio_core, portfolio_core.observability, portfolio_core.store; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('opentelemetry', 'prometheus_client'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout == "[]\n"
