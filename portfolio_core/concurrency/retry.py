"""RetryPolicy: which failures are worth another attempt, and how long to wait.

Built on tenacity: full-jitter exponential backoff (``wait_random_exponential``),
bounded by a number of attempts and by an overall deadline. The policy re-runs
a *whole* unit of work; it never re-runs a single statement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypedDict

from tenacity import (
    RetryCallState,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from portfolio_core.errors import (
    ConnectionLostError,
    DeadlockException,
    PessimisticLockException,
    SerializationFailureException,
    StaleDataException,
    ValidationError,
    VersionMismatchError,
)
from portfolio_core.units import Ratio, Seconds


class _StopBeforeDeadline(stop_base):
    """Stop when the next wait would end past the deadline (tenacity's
    stop_before_delay, measured with the policy's clock rather than real time)."""

    def __init__(
        self,
        deadline: Seconds,
        clock: Callable[[], Seconds],
        started: Seconds,
    ) -> None:
        self.deadline = deadline
        self.clock = clock
        self.started = started

    def __call__(self, retry_state: RetryCallState) -> bool:
        elapsed = self.clock() - self.started
        return elapsed + retry_state.upcoming_sleep >= self.deadline


RETRYABLE_CONFLICTS = (StaleDataException, SerializationFailureException)
"""Optimistic conflicts: the unit of work read data another one changed."""


class RetryPolicyFields(TypedDict, total=False):
    """RetryPolicy's settings as keyword arguments, as ConcurrencyService has taken them
    since the seed (``ConcurrencyService(max_retries=5, base_delay=0.01)``).

    ``sleep=None`` there is still taken at run time for the default
    (time.sleep). ``clock`` is not among them: pass ``policy=RetryPolicy(clock=...)``.
    """

    max_retries: int
    base_delay: Seconds
    max_delay: Seconds
    backoff_factor: Ratio
    jitter: bool
    deadline: Seconds | None
    retry_lock_not_available: bool
    wait_lock_timeout: Seconds | None
    sleep: Callable[[Seconds], None]
    async_sleep: Callable[[Seconds], Awaitable[None]] | None


@dataclass(frozen=True)
class RetryPolicy:
    """How a unit of work is retried.

    ``max_retries=N`` allows N retries after the first attempt (N+1 attempts).
    The wait before retry k (1-based) is uniform in
    ``[0, min(max_delay, base_delay * backoff_factor ** (k - 1))]`` with
    ``jitter`` (full jitter), or exactly that bound without it. ``deadline``
    (seconds, None for none) stops retrying when the next wait would pass it.
    ``retry_lock_not_available`` decides whether a lock not obtained (55P03,
    SKIP LOCKED) is retried. ``wait_lock_timeout`` (seconds, None for no
    bound) is the ``lock_timeout`` of ``execute(lock="wait")`` when the call
    gives none, so a wait on a lock that is never released ends. ``sleep``
    (and ``async_sleep`` for the asyncio path) and ``clock`` (which measures
    the deadline) are injectable so tests never wait: a test's sleep can
    advance its clock.
    """

    max_retries: int = 3
    base_delay: Seconds = 0.1
    max_delay: Seconds = 5.0
    backoff_factor: Ratio = 2.0
    jitter: bool = True
    deadline: Seconds | None = 30.0
    retry_lock_not_available: bool = True
    wait_lock_timeout: Seconds | None = 30.0
    sleep: Callable[[Seconds], None] = field(default=time.sleep, compare=False)
    async_sleep: Callable[[Seconds], Awaitable[None]] | None = field(default=None, compare=False)
    clock: Callable[[], Seconds] = field(default=time.monotonic, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ValidationError("max_retries", self.max_retries, "must be an int")
        if self.max_retries < 0:
            raise ValidationError("max_retries", self.max_retries, "must be >= 0")
        for name in ("base_delay", "max_delay"):
            if getattr(self, name) < 0:
                raise ValidationError(name, getattr(self, name), "must be >= 0")
        if self.backoff_factor < 1:
            raise ValidationError("backoff_factor", self.backoff_factor, "must be >= 1")
        if self.wait_lock_timeout is not None and not self.wait_lock_timeout > 0:
            raise ValidationError(
                "wait_lock_timeout", self.wait_lock_timeout, "must be > 0 seconds or None"
            )
        if self.deadline is not None and self.deadline <= 0:
            raise ValidationError("deadline", self.deadline, "must be > 0 or None")

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` ended an attempt that may be re-run from scratch."""
        if isinstance(error, PessimisticLockException):
            return self.retry_lock_not_available
        if isinstance(error, VersionMismatchError):
            return False  # the caller's If-Match: a retry meets the same version
        return isinstance(error, (*RETRYABLE_CONFLICTS, DeadlockException, ConnectionLostError))

    def async_sleeper(self) -> Callable[[Seconds], Awaitable[None]]:
        """How the asyncio path waits: ``async_sleep``, else asyncio.sleep.

        A ``sleep`` injected without an ``async_sleep`` (tests recording the
        waits) is honoured on the asyncio path too, called in place of
        asyncio.sleep, so one injected function governs both paths.
        """
        if self.async_sleep is not None:
            return self.async_sleep
        if self.sleep is time.sleep:
            return asyncio.sleep
        sleep = self.sleep

        async def injected(seconds: Seconds) -> None:
            sleep(seconds)

        return injected

    def stop(self, started: Seconds | None = None) -> stop_base:
        """tenacity stop condition: attempts, then the deadline counted from ``started``.

        ``started`` is a reading of ``clock`` when the first attempt began
        (now if None); build one stop condition per run.
        """
        attempts = stop_after_attempt(self.max_retries + 1)
        if self.deadline is None:
            return attempts
        start = self.clock() if started is None else started
        return attempts | _StopBeforeDeadline(self.deadline, self.clock, start)

    def wait(self) -> wait_base:
        """tenacity wait strategy: (full-jitter) exponential backoff."""
        if self.jitter:
            return wait_random_exponential(
                multiplier=self.base_delay, max=self.max_delay, exp_base=self.backoff_factor
            )
        return wait_exponential(
            multiplier=self.base_delay, max=self.max_delay, exp_base=self.backoff_factor
        )
