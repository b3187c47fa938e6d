"""ConcurrencyService: retries of whole units of work, cross-process entity locks, metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from tenacity import RetryCallState, Retrying, retry_if_exception

from portfolio_core.concurrency.metrics import ConcurrencyMetrics, log_event
from portfolio_core.concurrency.retry import RETRYABLE_CONFLICTS, RetryPolicy
from portfolio_core.errors import (
    CommitOutcomeUnknownError,
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

T = TypeVar("T")

_COUNTED: Final = "_portfolio_core_counted_in"
"""Attribute of a refused-lock error: the metrics entity_lock already counted it in."""
_TRY_LOCK: Final = text("SELECT pg_try_advisory_xact_lock(:key)")
_LOCK: Final = text("SELECT pg_advisory_xact_lock(:key)")


class ConcurrencyService:
    """Retry policy, PostgreSQL advisory locks and metrics, shared by a service's threads.

    ``run(work)`` calls ``work()`` (a whole unit of work: open a session,
    load, change, commit) and calls it again, from scratch, after a retryable
    failure, waiting with jittered exponential backoff; see RetryPolicy. The
    engine is only needed by :meth:`entity_lock` without a session.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        max_retries: int = 3,
        base_delay: float = 0.1,  # float-ok: seconds
        max_delay: float = 5.0,  # float-ok: seconds
        backoff_factor: float = 2.0,  # float-ok: a ratio
        jitter: bool = True,
        *,
        deadline: float | None = 30.0,  # float-ok: seconds
        retry_lock_not_available: bool = True,
        sleep: Callable[[float], None] | None = None,  # float-ok: seconds
        policy: RetryPolicy | None = None,
        metrics: ConcurrencyMetrics | None = None,
    ) -> None:
        self.engine = engine
        if policy is None:
            extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
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
        try:
            for attempt in retrying:
                attempt_number = attempt.retry_state.attempt_number
                with attempt:
                    if attempt_number == 1:
                        raise first_failure
                    result = self._attempt(work, entity_type, entity_id, attempt_number)
        except Exception as error:
            # A retryable error can only get out of the loop once the policy stops.
            if self.policy.is_retryable(error):
                raise self._exhausted(error, attempt_number, entity_type, entity_id) from error
            raise
        if attempt_number > 1:
            self.metrics.increment("successful_retries")
            log_event(
                "retry_succeeded",
                entity_type=entity_type,
                entity_id=entity_id,
                attempt=attempt_number,
            )
        return result

    def retry_on_version_conflict(
        self, operation: Callable[[], T], entity_type: str, entity_id: object
    ) -> T:
        """The seed's name for :meth:`run`: retry ``operation`` (a whole unit of work)."""
        return self.run(operation, entity_type=entity_type, entity_id=entity_id)

    def _attempt(
        self, work: Callable[[], T], entity_type: str, entity_id: object, attempt: int
    ) -> T:
        try:
            return work()
        except StaleDataError as error:
            # Raw ORM staleness from a caller's own session: same meaning.
            conflict = StaleDataException(entity_type, entity_id, None, None)
            self._record(conflict, entity_type, entity_id, attempt)
            raise conflict from error
        except DBAPIError as error:
            mapped = translate(error, entity_type=entity_type, entity_id=entity_id)
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
        elif isinstance(error, CommitOutcomeUnknownError):
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
                f"database connection lost on each of {attempts} attempts", attempts=attempts
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
        key = advisory_key(entity_type, entity_id)
        if session is not None:
            with guarded_lock_attempt(session):
                self._acquire(session, key, timeout, entity_type, entity_id)
            yield
            return
        if self.engine is None:
            raise ConfigurationError(
                "entity_lock without a session needs ConcurrencyService(engine=...)"
            )
        with self.engine.connect() as connection, connection.begin():
            self._acquire(connection, key, timeout, entity_type, entity_id)
            yield

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
