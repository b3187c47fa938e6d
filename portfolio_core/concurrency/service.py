"""ConcurrencyService: the public face of retries, entity locks and metrics.

It composes :class:`~portfolio_core.concurrency.retrying.Retrier` (whole
units of work re-run under a RetryPolicy) and the PostgreSQL advisory locks of
:mod:`portfolio_core.concurrency.entity_locks`, both counting into one
ConcurrencyMetrics.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, TypeVar, Unpack

from sqlalchemy import Engine

from portfolio_core.concurrency.entity_locks import (
    AdvisoryLock,
    async_entity_lock_held,
    entity_lock_held,
)
from portfolio_core.concurrency.hot_rows import HotRows
from portfolio_core.concurrency.metrics import ConcurrencyMetrics
from portfolio_core.concurrency.retry import RetryPolicy, RetryPolicyFields
from portfolio_core.concurrency.retrying import Retrier
from portfolio_core.domain import arguments
from portfolio_core.errors import ConfigurationError
from portfolio_core.units import Seconds

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["ConcurrencyService", "default_service"]

T = TypeVar("T")


class ConcurrencyService:
    """Retry policy, PostgreSQL advisory locks and metrics, shared by a service's threads.

    ``run(work)`` calls ``work()`` (a whole unit of work: open a session,
    load, change, commit) and calls it again, from scratch, after a retryable
    failure, waiting with jittered exponential backoff; see RetryPolicy.
    ``run_async`` is the same for asyncio (one classification, one set of
    metrics for both). The engine is only needed by :meth:`entity_lock`
    without a session; :meth:`async_entity_lock` without a session needs an
    AsyncEngine, passed as ``engine`` or ``async_engine``.

    The policy is ``policy=RetryPolicy(...)`` or, as since the seed, its
    settings as keywords (``max_retries``, ``base_delay``, ``max_delay``,
    ``backoff_factor``, ``jitter``, ``deadline``, ``retry_lock_not_available``,
    ``sleep``, ``async_sleep``; see RetryPolicyFields). Passing both is a
    mistake in the call and raises TypeError, as Python does for an argument
    given twice. ``hot_rows`` (a HotRows) is the per-portfolio memory of
    version conflicts that makes ``lock="auto"`` take the row lock first on
    a hot portfolio; by default one of the service's own.
    """

    def __init__(
        self,
        engine: Engine | AsyncEngine | None = None,
        *,
        policy: RetryPolicy | None = None,
        metrics: ConcurrencyMetrics | None = None,
        async_engine: AsyncEngine | None = None,
        hot_rows: HotRows | None = None,
        **policy_fields: Unpack[RetryPolicyFields],
    ) -> None:
        if engine is not None and not isinstance(engine, Engine):  # an AsyncEngine
            if async_engine is not None and async_engine is not engine:
                raise ConfigurationError("pass one AsyncEngine: engine= or async_engine=")
            engine, async_engine = None, engine
        self.engine = engine
        self.async_engine = async_engine
        self.policy = _chosen_policy(policy, policy_fields)
        self.metrics = metrics or ConcurrencyMetrics()
        self.hot_rows = hot_rows or HotRows()
        """The portfolios whose version conflicts make ``lock="auto"`` lock first (see HotRows)."""
        self._retrier = Retrier(self.policy, self.metrics)

    # -- retries ---------------------------------------------------------------

    def run(
        self, work: Callable[[], T], *, entity_type: str = "Portfolio", entity_id: object = None
    ) -> T:
        """Call ``work()`` until it succeeds, fails for good, or the policy runs out.

        ``work`` must be a whole unit of work: each call starts from a fresh
        session. Exhaustion raises OptimisticLockException,
        DeadlockException, PessimisticLockException or DatabaseConnectionError
        with ``retries`` set, chained to the last failure.
        """
        return self._retrier.run(work, entity_type=entity_type, entity_id=entity_id)

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
        return await self._retrier.run_async(work, entity_type=entity_type, entity_id=entity_id)

    def retry_on_version_conflict(
        self, operation: Callable[[], T], entity_type: str, entity_id: object
    ) -> T:
        """The seed's name for :meth:`run`: retry ``operation`` (a whole unit of work)."""
        return self.run(operation, entity_type=entity_type, entity_id=entity_id)

    # -- locks -------------------------------------------------------------------

    def entity_lock(
        self,
        entity_type: str,
        entity_id: object,
        *,
        timeout: Seconds | None = None,
        session: Session | None = None,
    ) -> AbstractContextManager[None]:
        """Hold a PostgreSQL advisory transaction lock on an entity for the ``with`` block.

        The lock is seen by every process and host using the same database.
        Given a ``session`` it joins that session's transaction and is released
        when that transaction ends; otherwise a connection of the service's
        engine holds a transaction open for the block. ``timeout`` (seconds):
        None waits as long as it takes, 0 tries once, more waits at most that
        long; a lock not obtained raises PessimisticLockException (and a given
        session stays usable).
        """
        lock = AdvisoryLock(self.metrics, entity_type, entity_id, arguments.lock_wait(timeout))
        return entity_lock_held(lock, session=session, engine=self.engine)

    def async_entity_lock(
        self,
        entity_type: str,
        entity_id: object,
        *,
        timeout: Seconds | None = None,
        session: AsyncSession | None = None,
    ) -> AbstractAsyncContextManager[None]:
        """:meth:`entity_lock` for asyncio, ``async with``: the same advisory xact lock.

        Given an AsyncSession (e.g. ``AsyncUnitOfWork.session``) the lock joins
        its transaction; otherwise a connection of the service's AsyncEngine
        (``ConcurrencyService(engine=async_engine)`` or ``async_engine=``)
        holds a transaction open for the block. ``timeout`` as in entity_lock.
        """
        lock = AdvisoryLock(self.metrics, entity_type, entity_id, arguments.lock_wait(timeout))
        return async_entity_lock_held(lock, session=session, engine=self.async_engine)

    # -- metrics -----------------------------------------------------------------

    def get_metrics(self) -> dict[str, int]:
        """The counters: exactly the keys of ``METRIC_NAMES``.

        version_conflicts, successful_retries, failed_retries,
        deadlocks_detected, lock_timeouts and serialization_failures (see
        ConcurrencyMetrics).
        """
        return self.metrics.snapshot()

    def reset_metrics(self) -> None:
        """Zero every counter."""
        self.metrics.reset()


def _chosen_policy(policy: RetryPolicy | None, fields: RetryPolicyFields) -> RetryPolicy:
    """``policy``, or one built from the loose keyword settings; never both."""
    if policy is not None:
        if fields:
            raise TypeError(
                "ConcurrencyService() takes policy= or the policy's settings as keywords, "
                f"not both (got policy= and {', '.join(sorted(fields))})"
            )
        return policy
    if "sleep" in fields and fields["sleep"] is None:
        del fields["sleep"]  # the seed's sleep=None meant the default, time.sleep
    return RetryPolicy(**fields)


_default: ConcurrencyService | None = None
_default_guard = threading.Lock()


def default_service() -> ConcurrencyService:
    """The process-wide service used when none is given (no engine; default policy)."""
    global _default
    with _default_guard:
        if _default is None:
            _default = ConcurrencyService()
        return _default
