"""Hooks: typed events of every store call and its attempts, for listeners to subscribe to.

Each call of a PortfolioStore or AsyncPortfolioStore method (``execute``,
``transfer``, ``get``...) is reported to the registered listeners, from the
thread or task that makes the call, in this order::

    call_started(StoreCallInfo)
    attempt_started(AttemptStarted)       # once per attempt: 1, 2, ...
    attempt_finished(AttemptFinished)
    ...
    call_finished(StoreCallFinished)

Both stores report the same events (the retry loop and the stores' call path
are shared). With no listener registered nothing is built or measured.
A listener that raises is logged (a warning on ``portfolio_core.observability``)
and skipped: it never changes the outcome of the store call.

Outcomes
--------
An attempt's ``outcome`` is ``"ok"`` or ``"error:<ExceptionClass>"`` (the
failure as the library raises it, e.g. ``"error:StaleDataException"``); its
``cause`` names a concurrency failure (see :data:`CAUSES`) or is None.

A call's ``outcome`` is one of:

* ``"ok"``: it returned (after however many attempts: see ``attempts``);
* ``"retries_exhausted"``: every attempt the retry policy allowed failed on a
  retryable conflict (OptimisticLockException, DeadlockException... with ``retries``);
* ``"outcome_unknown"``: CommitOutcomeUnknownException (the COMMIT's reply was lost);
* ``"error:<ExceptionClass>"``: any other failure, e.g. ``"error:VersionMismatchError"``
  or ``"error:InsufficientFundsError"``; never retried.

A retry's cause is the cause of the attempt before it: ``AttemptStarted.retry_cause``
and ``StoreCallFinished.retry_causes`` (one per retry, in order).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol
from uuid import UUID

from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    ConnectionLostError,
    DeadlockException,
    PessimisticLockException,
    SerializationFailureException,
    StaleDataException,
    VersionMismatchError,
)
from portfolio_core.units import Seconds

__all__ = [
    "CAUSES",
    "OK",
    "OUTCOME_UNKNOWN",
    "RETRIES_EXHAUSTED",
    "AttemptFinished",
    "AttemptStarted",
    "BaseStoreListener",
    "StoreCallFinished",
    "StoreCallInfo",
    "StoreListener",
    "add_listener",
    "error_outcome",
    "failure_cause",
    "listeners",
    "remove_listener",
]

logger: Final = logging.getLogger("portfolio_core.observability")

OK: Final = "ok"
RETRIES_EXHAUSTED: Final = "retries_exhausted"
OUTCOME_UNKNOWN: Final = "outcome_unknown"

CAUSES: Final = (
    "version_conflict",
    "serialization_failure",
    "deadlock",
    "lock_not_available",
    "connection_lost",
    "commit_outcome_unknown",
)
"""The concurrency failures an attempt can end with (a small, fixed set of label values)."""


@dataclass(frozen=True)
class StoreCallInfo:
    """One store call, as known when it starts (and carried by every later event).

    ``call_id`` is unique in the process: a listener keeping state per call keys it on it.
    ``lock_mode`` is the ``lock=`` of ``execute``/``execute_versioned``, ``"wait"``
    for the calls that always queue on row locks (``transfer``, ``batch_update``)
    and None for the others. ``database``, ``server_address`` and ``server_port``
    come from the store's engine URL (None when the URL has none).
    """

    call_id: int
    operation: str
    portfolio_ids: tuple[UUID, ...]
    lock_mode: str | None = None
    idempotent: bool = False
    database: str | None = None
    server_address: str | None = None
    server_port: int | None = None


@dataclass(frozen=True)
class AttemptStarted:
    """An attempt (a fresh unit of work) begins; ``attempt`` counts from 1 within the call.

    ``retry_cause`` is None for the first attempt, else the cause of the failure
    that made this retry (see :data:`CAUSES`).
    """

    call: StoreCallInfo
    attempt: int
    retry_cause: str | None = None


@dataclass(frozen=True)
class AttemptFinished:
    """An attempt ended: ``outcome`` ``"ok"`` or ``"error:<ExceptionClass>"``.

    ``cause`` is the concurrency failure it ended with (see :data:`CAUSES`),
    None on success or for other errors; ``error`` the exception, as raised.
    """

    call: StoreCallInfo
    attempt: int
    outcome: str
    cause: str | None
    duration: Seconds
    error: BaseException | None = None


@dataclass(frozen=True)
class StoreCallFinished:
    """The call returned or raised: its outcome (see the module doc), attempts and retries."""

    call: StoreCallInfo
    outcome: str
    attempts: int
    retry_causes: tuple[str, ...]
    duration: Seconds
    error: BaseException | None = None


class StoreListener(Protocol):
    """What a listener implements; subclass :class:`BaseStoreListener` to override only some.

    Methods are called synchronously in the calling thread or task: keep them
    quick and non-blocking (hand heavy work to a queue).
    """

    def call_started(self, call: StoreCallInfo) -> None:
        """A store call begins."""

    def attempt_started(self, attempt: AttemptStarted) -> None:
        """One attempt of it begins."""

    def attempt_finished(self, attempt: AttemptFinished) -> None:
        """One attempt of it ended."""

    def call_finished(self, call: StoreCallFinished) -> None:
        """The store call returned or raised."""


class BaseStoreListener(StoreListener):
    """A StoreListener whose every method does nothing: override only what you need."""

    def call_started(self, call: StoreCallInfo) -> None:
        """A store call begins."""

    def attempt_started(self, attempt: AttemptStarted) -> None:
        """One attempt of it begins."""

    def attempt_finished(self, attempt: AttemptFinished) -> None:
        """One attempt of it ended."""

    def call_finished(self, call: StoreCallFinished) -> None:
        """The store call returned or raised."""


_guard = threading.Lock()
_listeners: tuple[StoreListener, ...] = ()
"""Replaced whole under _guard, read without it: a call sees one consistent set."""


def add_listener(listener: StoreListener) -> Callable[[], None]:
    """Subscribe ``listener`` to every store call of the process; return its remover.

    Adding a listener already subscribed does nothing (it is called once).
    """
    global _listeners
    with _guard:
        if not any(known is listener for known in _listeners):
            _listeners = (*_listeners, listener)
    return lambda: remove_listener(listener)


def remove_listener(listener: StoreListener) -> None:
    """Unsubscribe ``listener`` (nothing happens if it is not subscribed).

    A call already under way keeps reporting to the listeners it started with.
    """
    global _listeners
    with _guard:
        _listeners = tuple(known for known in _listeners if known is not listener)


def listeners() -> tuple[StoreListener, ...]:
    """The listeners subscribed now."""
    return _listeners


def failure_cause(error: BaseException) -> str | None:
    """The concurrency failure ``error`` stands for (one of :data:`CAUSES`), or None."""
    if isinstance(error, VersionMismatchError):
        return None  # the caller's If-Match, not a race: never retried
    if isinstance(error, StaleDataException):
        return "version_conflict"
    if isinstance(error, SerializationFailureException):
        return "serialization_failure"
    if isinstance(error, DeadlockException):
        return "deadlock"
    if isinstance(error, PessimisticLockException):
        return "lock_not_available"
    if isinstance(error, ConnectionLostError):
        return "connection_lost"
    if isinstance(error, CommitOutcomeUnknownException):
        return "commit_outcome_unknown"
    return None


def error_outcome(error: BaseException) -> str:
    """``"error:<ExceptionClass>"``: the outcome of a failure that is nothing more specific."""
    return f"error:{type(error).__name__}"


def notify(
    subscribed: tuple[StoreListener, ...],
    method: str,
    event: StoreCallInfo | AttemptStarted | AttemptFinished | StoreCallFinished,
) -> None:
    """Call ``method`` of each listener with ``event``; a listener's failure is logged only."""
    for listener in subscribed:
        try:
            getattr(listener, method)(event)
        except Exception:
            logger.warning(
                "store listener %r failed in %s; the store call goes on",
                listener,
                method,
                exc_info=True,
            )
