"""ConcurrencyService: retries of whole units of work, cross-process entity locks, metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolCheckoutTimeout
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception

from portfolio_core.concurrency.metrics import ConcurrencyMetrics, log_event
from portfolio_core.concurrency.retry import RETRYABLE_CONFLICTS, RetryPolicy
from portfolio_core.domain import arguments
from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    ConfigurationError,
    ConnectionLostError,
    DatabaseConnectionError,
    DeadlockException,
    OptimisticLockException,
    PessimisticLockException,
    StaleDataException,
)
from portfolio_core.persistence.errors import sqlstate_of, translate, translated
from portfolio_core.persistence.locking import (
    advisory_key,
    guarded_lock_attempt,
    local_lock_timeout,
)

if TYPE_CHECKING:
    # Only with the 'async' extra (greenlet); never imported at run time from here.
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

T = TypeVar("T")

_COUNTED: Final = "_portfolio_core_counted_in"
"""Attribute of a refused-lock error: the metrics entity_lock already counted it in."""
_TRY_LOCK: Final = text("SELECT pg_try_advisory_xact_lock(:key)")
_LOCK: Final = text("SELECT pg_advisory_xact_lock(:key)")


class ConcurrencyService:
    """Retry policy, PostgreSQL advisory locks and metrics, shared by a service's threads.

    ``run(work)`` calls ``work()`` (a whole unit of work: open a session,
    load, change, commit) and calls it again, from scratch, after a retryable
    failure, waiting with jittered exponential backoff; see RetryPolicy.
    ``run_async`` is the same for asyncio (one classification, one set of
    metrics for both). The engine is only needed by :meth:`entity_lock`
    without a session; :meth:`async_entity_lock` without a session needs an
    AsyncEngine, passed as ``engine`` or ``async_engine``.
    """

    def __init__(
        self,
        engine: Engine | AsyncEngine | None = None,
        max_retries: int = 3,
        base_delay: float = 0.1,  # float-ok: seconds
        max_delay: float = 5.0,  # float-ok: seconds
        backoff_factor: float = 2.0,  # float-ok: a ratio
        jitter: bool = True,
        *,
        deadline: float | None = 30.0,  # float-ok: seconds
        retry_lock_not_available: bool = True,
        sleep: Callable[[float], None] | None = None,  # float-ok: seconds
        async_sleep: Callable[[float], Awaitable[None]] | None = None,  # float-ok: seconds
        policy: RetryPolicy | None = None,
        metrics: ConcurrencyMetrics | None = None,
        async_engine: AsyncEngine | None = None,
    ) -> None:
        if engine is not None and not isinstance(engine, Engine):  # an AsyncEngine
            if async_engine is not None and async_engine is not engine:
                raise ConfigurationError("pass one AsyncEngine: engine= or async_engine=")
            engine, async_engine = None, engine
        self.engine = engine
        self.async_engine = async_engine
        if policy is None:
            extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
            if async_sleep is not None:
                extra["async_sleep"] = async_sleep
            policy = RetryPolicy(
                max_retries=max_retries,
                base_delay=base_delay,
                max_delay=max_delay,
                backoff_factor=backoff_factor,
                jitter=jitter,
                deadline=deadline,
                retry_lock_not_available=retry_lock_not_available,
                **extra,
            )
        self.policy = policy
        self.metrics = metrics or ConcurrencyMetrics()
        self._retrying = Retrying(
            stop=policy.stop(),
            wait=policy.wait(),
            retry=retry_if_exception(policy.is_retryable),
            sleep=policy.sleep,
            reraise=True,
        )
        self._async_retrying = AsyncRetrying(
            wait=policy.wait(),
            retry=retry_if_exception(policy.is_retryable),
            sleep=policy.async_sleeper(),
            reraise=True,
        )

    # -- retries ---------------------------------------------------------------

    def run(
        self,
        work: Callable[[], T],
        *,
        entity_type: str = "Portfolio",
        entity_id: object = None,
    ) -> T:
        """Call ``work()`` until it succeeds, fails for good, or the policy runs out.

        ``work`` must be a whole unit of work: each call starts from a fresh
        session. Exhaustion raises OptimisticLockException,
        DeadlockException, PessimisticLockException or DatabaseConnectionError
        with ``retries`` set, chained to the last failure.
        """
        # Most calls succeed first time: run attempt 1 before building any
        # tenacity state (copying a Retrying and driving its iterator costs
        # tens of microseconds, a measurable share of a whole unit of work).
        started = self.policy.clock()
        try:
            return self._attempt(work, entity_type, entity_id, 1)
        except Exception as error:
            if not self.policy.is_retryable(error):
                raise
            first_failure = error
        # A retryable failure: tenacity takes over, its attempt 1 being the one
        # that just failed (same stop, deadline from the first call, waits).
        retrying = self._retrying.copy(
            stop=self.policy.stop(started),
            before_sleep=lambda state: self._before_sleep(state, entity_type, entity_id),
        )
        attempt_number = 0
        with self._outcome(entity_type, entity_id, lambda: attempt_number):
            for attempt in retrying:
                attempt_number = attempt.retry_state.attempt_number
                with attempt:
                    if attempt_number == 1:
                        raise first_failure
                    result = self._attempt(work, entity_type, entity_id, attempt_number)
        self._succeeded(entity_type, entity_id, attempt_number)
        return result

    async def run_async(
        self,
        work: Callable[[], Awaitable[T]],
        *,
        entity_type: str = "Portfolio",
        entity_id: object = None,
    ) -> T:
        """:meth:`run` for asyncio: await ``work()`` until it succeeds or the policy runs out.

        The same classification, metrics, backoff (slept with the policy's
        async sleep, never blocking the event loop) and exhaustion errors as
        :meth:`run`; ``work`` must be a whole async unit of work.
        """
        started = self.policy.clock()
        try:
            with self._classified(entity_type, entity_id, 1):
                return await work()
        except Exception as error:
            if not self.policy.is_retryable(error):
                raise
            first_failure = error
        retrying = self._async_retrying.copy(
            stop=self.policy.stop(started),
            before_sleep=lambda state: self._before_sleep(state, entity_type, entity_id),
        )
        attempt_number = 0
        with self._outcome(entity_type, entity_id, lambda: attempt_number):
            async for attempt in retrying:
                attempt_number = attempt.retry_state.attempt_number
                with attempt:
                    if attempt_number == 1:
                        raise first_failure
                    with self._classified(entity_type, entity_id, attempt_number):
                        result = await work()
        self._succeeded(entity_type, entity_id, attempt_number)
        return result

    @contextmanager
    def _outcome(
        self, entity_type: str, entity_id: object, attempts: Callable[[], int]
    ) -> Iterator[None]:
        """Map a retryable error that got out of the retry loop to its exhaustion error."""
        try:
            yield
        except Exception as error:
            # A retryable error can only get out of the loop once the policy stops.
            if self.policy.is_retryable(error):
                raise self._exhausted(error, attempts(), entity_type, entity_id) from error
            raise

    def _succeeded(self, entity_type: str, entity_id: object, attempt_number: int) -> None:
        if attempt_number > 1:
            self.metrics.increment("successful_retries")
            log_event(
                "retry_succeeded",
                entity_type=entity_type,
                entity_id=entity_id,
                attempt=attempt_number,
            )

    def retry_on_version_conflict(
        self, operation: Callable[[], T], entity_type: str, entity_id: object
    ) -> T:
        """The seed's name for :meth:`run`: retry ``operation`` (a whole unit of work)."""
        return self.run(operation, entity_type=entity_type, entity_id=entity_id)

    def _attempt(
        self, work: Callable[[], T], entity_type: str, entity_id: object, attempt: int
    ) -> T:
        with self._classified(entity_type, entity_id, attempt):
            return work()

    @contextmanager
    def _classified(self, entity_type: str, entity_id: object, attempt: int) -> Iterator[None]:
        """Translate, count and log the failure of one attempt (sync and async alike)."""
        try:
            yield
        except StaleDataError as error:
            # Raw ORM staleness from a caller's own session: same meaning.
            conflict = StaleDataException(entity_type, entity_id, None, None)
            self._record(conflict, entity_type, entity_id, attempt)
            raise conflict from error
        except (DBAPIError, PoolCheckoutTimeout) as error:
            # Not translated by a PortfolioSession: the work used a session or
            # connection of its own, so an established connection that died
            # may have died during its COMMIT. That is an unknown outcome,
            # never a blind retry (a failed connect is still retried).
            mapped = translate(
                error,
                entity_type=entity_type,
                entity_id=entity_id,
                during_commit=getattr(error, "connection_invalidated", False),
            )
            if mapped is None:
                raise
            mapped.__cause__ = error  # before _record, which reads the SQLSTATE from it
            self._record(mapped, entity_type, entity_id, attempt)
            raise mapped from error
        except Exception as error:
            if vars(error).get(_COUNTED) is self.metrics:
                # Already counted by entity_lock inside this work: once is enough
                # (the mark is consumed, so a re-raised object counts next time).
                del vars(error)[_COUNTED]
            else:
                self._record(error, entity_type, entity_id, attempt)
            raise

    def _record(
        self, error: BaseException, entity_type: str, entity_id: object, attempt: int
    ) -> None:
        sqlstate = getattr(error, "sqlstate", None) or sqlstate_of(error.__cause__ or error)
        common: dict[str, object] = {
            "entity_type": getattr(error, "entity_type", None) or entity_type,
            "entity_id": getattr(error, "entity_id", None) or entity_id,
            "attempt": attempt,
            "sqlstate": sqlstate,
        }
        if isinstance(error, RETRYABLE_CONFLICTS):
            self.metrics.increment("version_conflicts")
            log_event(
                "version_conflict",
                **common,
                expected_version=getattr(error, "expected_version", None),
                actual_version=getattr(error, "actual_version", None),
            )
        elif isinstance(error, DeadlockException):
            self.metrics.increment("deadlocks_detected")
            log_event("deadlock_detected", logging.WARNING, **common)
        elif isinstance(error, PessimisticLockException):
            self.metrics.increment("lock_timeouts")
            log_event("lock_not_available", **common)
        elif isinstance(error, ConnectionLostError):
            log_event("connection_lost", logging.WARNING, **common)
        elif isinstance(error, CommitOutcomeUnknownException):
            # Not retried: the caller must find out whether it committed.
            log_event("commit_outcome_unknown", logging.ERROR, **common)

    def _before_sleep(self, state: RetryCallState, entity_type: str, entity_id: object) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log_event(
            "retrying",
            entity_type=entity_type,
            entity_id=entity_id,
            attempt=state.attempt_number,
            delay=round(state.upcoming_sleep, 4),
            error=type(error).__name__ if error is not None else None,
        )

    def _exhausted(
        self, error: BaseException, attempts: int, entity_type: str, entity_id: object
    ) -> Exception:
        retries = attempts - 1
        self.metrics.increment("failed_retries")
        log_event(
            "retries_exhausted",
            logging.WARNING,
            entity_type=entity_type,
            entity_id=entity_id,
            attempt=attempts,
            sqlstate=getattr(error, "sqlstate", None) or sqlstate_of(error.__cause__ or error),
            error=type(error).__name__,
        )
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

    # -- locks -------------------------------------------------------------------

    @contextmanager
    def entity_lock(
        self,
        entity_type: str,
        entity_id: object,
        *,
        timeout: float | None = None,  # float-ok: seconds
        session: Session | None = None,
    ) -> Iterator[None]:
        """Hold a PostgreSQL advisory transaction lock on an entity for the block.

        The lock is seen by every process and host using the same database.
        Given a ``session`` it joins that session's transaction and is released
        when that transaction ends; otherwise a connection of the service's
        engine holds a transaction open for the block. ``timeout`` (seconds):
        None waits as long as it takes, 0 tries once, more waits at most that
        long; a lock not obtained raises PessimisticLockException (and a given
        session stays usable).
        """
        key, timeout = advisory_key(entity_type, entity_id), arguments.lock_wait(timeout)
        if session is not None:
            self._lock_in_session(session, key, timeout, entity_type, entity_id)
            yield
            return
        if self.engine is None:
            raise ConfigurationError(
                "entity_lock without a session needs ConcurrencyService(engine=...)"
            )
        with self.engine.connect() as connection, connection.begin():
            self._acquire(connection, key, timeout, entity_type, entity_id)
            yield

    @asynccontextmanager
    async def async_entity_lock(
        self,
        entity_type: str,
        entity_id: object,
        *,
        timeout: float | None = None,  # float-ok: seconds
        session: AsyncSession | None = None,
    ) -> AsyncIterator[None]:
        """:meth:`entity_lock` for asyncio, ``async with``: the same advisory xact lock.

        Given an AsyncSession (e.g. ``AsyncUnitOfWork.session``) the lock joins
        its transaction; otherwise a connection of the service's AsyncEngine
        (``ConcurrencyService(engine=async_engine)`` or ``async_engine=``)
        holds a transaction open for the block. ``timeout`` as in entity_lock.
        """
        key, timeout = advisory_key(entity_type, entity_id), arguments.lock_wait(timeout)
        if session is not None:
            await session.run_sync(self._lock_in_session, key, timeout, entity_type, entity_id)
            yield
            return
        if self.async_engine is None:
            raise ConfigurationError(
                "async_entity_lock without a session needs an AsyncEngine: "
                "ConcurrencyService(engine=async_engine) or async_engine=..."
            )
        async with self.async_engine.connect() as connection, connection.begin():
            await connection.run_sync(self._acquire, key, timeout, entity_type, entity_id)
            yield

    def _lock_in_session(
        self,
        session: Session,
        key: int,
        timeout: float | None,  # float-ok: seconds
        entity_type: str,
        entity_id: object,
    ) -> None:
        with guarded_lock_attempt(session):
            self._acquire(session, key, timeout, entity_type, entity_id)

    def _acquire(
        self,
        executor: Any,
        key: int,
        timeout: float | None,  # float-ok: seconds
        entity_type: str,
        entity_id: object,
    ) -> None:
        try:
            with translated(entity_type=entity_type, entity_id=entity_id, lock_timeout=timeout):
                if timeout is not None and timeout <= 0:
                    obtained = bool(executor.execute(_TRY_LOCK, {"key": key}).scalar_one())
                    if not obtained:
                        raise PessimisticLockException(
                            f"advisory lock on {entity_type} {entity_id} is held elsewhere",
                            entity_type=entity_type,
                            entity_id=entity_id,
                            timeout=0.0,
                        )
                else:
                    with local_lock_timeout(executor, timeout):
                        executor.execute(_LOCK, {"key": key})
        except PessimisticLockException as error:
            self._record(error, entity_type, entity_id, 1)
            setattr(error, _COUNTED, self.metrics)
            raise

    # -- metrics -----------------------------------------------------------------

    def get_metrics(self) -> dict[str, int]:
        """The counters: exactly the keys of ``METRIC_NAMES``.

        version_conflicts, successful_retries, failed_retries,
        deadlocks_detected and lock_timeouts (see ConcurrencyMetrics).
        """
        return self.metrics.snapshot()

    def reset_metrics(self) -> None:
        """Zero every counter."""
        self.metrics.reset()


_default: ConcurrencyService | None = None
_default_guard = threading.Lock()


def default_service() -> ConcurrencyService:
    """The process-wide service used when none is given (no engine; default policy)."""
    global _default
    with _default_guard:
        if _default is None:
            _default = ConcurrencyService()
        return _default
