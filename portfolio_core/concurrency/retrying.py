"""Retrier: re-run a whole unit of work under a RetryPolicy, from threads or asyncio.

The sync and asyncio paths make every decision in the same code (:class:`_Run`):
each attempt's failure is translated, counted and logged, a retryable one is
retried by tenacity, a success after retries is counted, and a policy that runs
out becomes one exhaustion error. They differ only in how the work is called
and the waits are slept: tenacity's ``Retrying`` or ``AsyncRetrying``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolCheckoutTimeout
from sqlalchemy.orm.exc import StaleDataError
from tenacity import AsyncRetrying, BaseRetrying, RetryCallState, Retrying, retry_if_exception

from portfolio_core.concurrency.metrics import (
    ConcurrencyMetrics,
    failure_sqlstate,
    log_event,
    record_failure,
)
from portfolio_core.concurrency.retry import RetryPolicy
from portfolio_core.errors import (
    ConnectionLostError,
    DatabaseConnectionError,
    DeadlockException,
    OptimisticLockException,
    PessimisticLockException,
    StaleDataException,
)
from portfolio_core.observability.tracking import note_exhausted, observed_attempt
from portfolio_core.persistence.errors import translate

T = TypeVar("T")
_R = TypeVar("_R", bound=BaseRetrying)


class Retrier:
    """Runs units of work under one RetryPolicy, counting into one ConcurrencyMetrics.

    Thread-safe and shareable by tasks: each call keeps its own state.
    """

    def __init__(self, policy: RetryPolicy, metrics: ConcurrencyMetrics) -> None:
        self.policy = policy
        self.metrics = metrics
        retry = retry_if_exception(policy.is_retryable)
        # Built once; each call that needs a retry takes a copy with its own stop.
        self._retrying = Retrying(wait=policy.wait(), retry=retry, sleep=policy.sleep)
        self._async_retrying = AsyncRetrying(
            wait=policy.wait(), retry=retry, sleep=policy.async_sleeper()
        )

    def run(self, work: Callable[[], T], *, entity_type: str, entity_id: object) -> T:
        """Call ``work()`` until it succeeds, fails for good, or the policy runs out."""
        run = _Run(self, entity_type, entity_id)

        def attempt() -> T:
            with run.attempt():
                return work()

        try:
            # Most calls succeed first time: no tenacity state is built for them.
            return attempt()
        except Exception as error:
            return run.retrying(error, self._retrying)(attempt)

    async def run_async(
        self, work: Callable[[], Awaitable[T]], *, entity_type: str, entity_id: object
    ) -> T:
        """:meth:`run` for asyncio: ``await work()``, waits slept without blocking the loop."""
        run = _Run(self, entity_type, entity_id)

        async def attempt() -> T:
            with run.attempt():
                return await work()

        try:
            return await attempt()
        except Exception as error:
            return await run.retrying(error, self._async_retrying)(attempt)


class _Run:
    """One call of run or run_async: its entity, when it started, its attempts so far."""

    __slots__ = ("attempts", "entity_id", "entity_type", "replay", "retrier", "started")

    def __init__(self, retrier: Retrier, entity_type: str, entity_id: object) -> None:
        self.retrier = retrier
        self.entity_type = entity_type
        self.entity_id = entity_id
        self.started = retrier.policy.clock()
        self.attempts = 0
        self.replay: Exception | None = None

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """One attempt of the work: its failure classified, a success after retries counted."""
        if self.replay is not None:
            # tenacity's attempt 1 is the one made before tenacity took over.
            failure, self.replay = self.replay, None
            raise failure
        self.attempts += 1
        observed = observed_attempt()  # the store call's listeners, if any
        try:
            yield
        except Exception as error:
            failure = self._classified(error)
            observed.finished(failure)
            if failure is error:
                raise
            raise failure from error
        except BaseException as error:  # cancelled: reported, not classified
            observed.finished(error)
            raise
        observed.finished(None)
        if self.attempts > 1:
            self.retrier.metrics.increment("successful_retries")
            self._log("retry_succeeded", attempt=self.attempts)

    def retrying(self, first_failure: Exception, retrying: _R) -> _R:
        """``retrying`` set up for the rest of this run, whose attempt 1 raised
        ``first_failure``; that failure is raised again if it is not retryable."""
        if not self.retrier.policy.is_retryable(first_failure):
            raise first_failure
        self.replay = first_failure
        return retrying.copy(
            stop=self.retrier.policy.stop(self.started),
            before_sleep=self._before_sleep,
            retry_error_callback=self._exhausted,
        )

    def _classified(self, error: Exception) -> Exception:
        """The error this attempt's failure stands for (``error`` itself or a
        translation chained to it), counted and logged."""
        failure: Exception | None = error
        if isinstance(error, StaleDataError):
            # Raw ORM staleness from a caller's own session: same meaning.
            failure = StaleDataException(self.entity_type, self.entity_id, None, None)
        elif isinstance(error, DBAPIError | PoolCheckoutTimeout):
            # Not translated by a PortfolioSession: the work used a session or
            # connection of its own, so an established connection that died
            # may have died during its COMMIT. That is an unknown outcome,
            # never a blind retry (a failed connect is still retried).
            failure = translate(
                error,
                entity_type=self.entity_type,
                entity_id=self.entity_id,
                during_commit=getattr(error, "connection_invalidated", False),
            )
        if failure is None:
            return error
        if failure is not error:
            failure.__cause__ = error  # record_failure reads the SQLSTATE from it
        record_failure(
            self.retrier.metrics, failure, self.entity_type, self.entity_id, self.attempts
        )
        return failure

    def _log(self, event: str, level: int = logging.INFO, /, **fields: object) -> None:
        log_event(event, level, entity_type=self.entity_type, entity_id=self.entity_id, **fields)

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        self._log(
            "retrying",
            attempt=state.attempt_number,
            delay=round(state.upcoming_sleep, 4),
            error=type(error).__name__ if error is not None else None,
        )

    def _exhausted(self, state: RetryCallState) -> NoReturn:
        """tenacity's retry_error_callback: the policy stopped on a retryable error."""
        error = state.outcome.exception() if state.outcome is not None else None
        if error is None:  # pragma: no cover - tenacity stops only after an attempt
            raise RuntimeError("the retry policy stopped without a failed attempt")
        self.retrier.metrics.increment("failed_retries")
        self._log(
            "retries_exhausted",
            logging.WARNING,
            attempt=state.attempt_number,
            sqlstate=failure_sqlstate(error),
            error=type(error).__name__,
        )
        exhaustion = _exhaustion_error(
            error, state.attempt_number, self.entity_type, self.entity_id
        )
        note_exhausted(exhaustion)
        raise exhaustion from error


def _exhaustion_error(
    error: BaseException, attempts: int, entity_type: str, entity_id: object
) -> Exception:
    """What a run raises when ``attempts`` attempts all failed, the last with ``error``."""
    retries = attempts - 1
    if isinstance(error, DeadlockException):
        return DeadlockException(
            f"deadlock on {entity_type} {entity_id} persisted through {retries} retries",
            entities=error.entities or [(entity_type, entity_id)],
            retries=retries,
        )
    if isinstance(error, PessimisticLockException):
        return PessimisticLockException(
            f"lock on {entity_type} {entity_id} not obtained after {retries} retries",
            entity_type=entity_type,
            entity_id=entity_id,
            sqlstate=error.sqlstate,
            timeout=error.timeout,
            retries=retries,
        )
    if isinstance(error, ConnectionLostError):
        return DatabaseConnectionError(
            f"database connection lost on each of {attempts} attempts: {error}",
            attempts=attempts,
        )
    return OptimisticLockException(
        f"{entity_type} {entity_id}: version conflicts outlasted {retries} retries",
        retries=retries,
        entity_type=entity_type,
        entity_id=entity_id,
        last_error=error,
    )
