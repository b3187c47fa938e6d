"""The call path's side of the hooks: which store call this thread or task is in.

The stores wrap each call in :func:`observed_call`; the retry loop
(``concurrency.retrying``) reports each attempt with :func:`observed_attempt`
and an exhausted policy with :func:`note_exhausted`, into the call a context
variable holds. Each thread and each asyncio task sees its own, so the sync
and the async stores report the same events through the same code. With no
listener subscribed when a call starts, nothing is tracked for it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Protocol
from uuid import UUID

from portfolio_core.errors import CommitOutcomeUnknownException
from portfolio_core.observability.hooks import (
    OK,
    OUTCOME_UNKNOWN,
    RETRIES_EXHAUSTED,
    AttemptFinished,
    AttemptStarted,
    StoreCallFinished,
    StoreCallInfo,
    StoreListener,
    error_outcome,
    failure_cause,
    listeners,
    notify,
)

__all__ = [
    "AttemptObservation",
    "ObservedStoreCall",
    "URLParts",
    "note_exhausted",
    "observed_attempt",
    "observed_call",
    "observed_store_call",
]


class URLParts(Protocol):
    """What is read of an engine's URL (sqlalchemy.engine.URL)."""

    @property
    def database(self) -> str | None: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...


class ObservedStoreCall(Protocol):
    """What is read of a store call (``store_call.StoreCall``)."""

    @property
    def operation(self) -> str: ...
    @property
    def entity_id(self) -> object: ...
    @property
    def lock_mode(self) -> str | None: ...
    @property
    def key(self) -> str | None: ...


class AttemptObservation:
    """One attempt being observed; :meth:`finished` reports how it ended."""

    __slots__ = ("_call", "_number", "_started")

    def __init__(self, call: _Call | None, number: int) -> None:
        self._call = call
        self._number = number
        self._started = time.perf_counter()

    def finished(self, error: BaseException | None) -> None:
        """Report the attempt ended, with ``error`` (as the library raises it) or None."""
        call = self._call
        if call is None:
            return
        self._call = None  # reported once
        call.in_attempt = False
        cause = None if error is None else failure_cause(error)
        if error is not None:
            call.last_cause = cause or "other"
        outcome = OK if error is None else error_outcome(error)
        duration = time.perf_counter() - self._started
        event = AttemptFinished(call.info, self._number, outcome, cause, duration, error)
        notify(call.listeners, "attempt_finished", event)


_UNOBSERVED = AttemptObservation(None, 0)


class _Call:
    """A store call being observed: its listeners, attempts so far and retry causes."""

    __slots__ = (
        "attempts",
        "exhausted",
        "in_attempt",
        "info",
        "last_cause",
        "listeners",
        "retry_causes",
        "started",
    )

    def __init__(self, info: StoreCallInfo, subscribed: tuple[StoreListener, ...]) -> None:
        self.info = info
        self.listeners = subscribed
        self.started = time.perf_counter()
        self.attempts = 0
        self.in_attempt = False
        self.last_cause: str | None = None
        self.retry_causes: list[str] = []
        self.exhausted: BaseException | None = None

    def start_attempt(self) -> AttemptObservation:
        self.attempts += 1
        self.in_attempt = True
        retry_cause = None
        if self.attempts > 1:
            retry_cause = self.last_cause or "other"
            self.retry_causes.append(retry_cause)
        notify(
            self.listeners, "attempt_started", AttemptStarted(self.info, self.attempts, retry_cause)
        )
        return AttemptObservation(self, self.attempts)

    def finish(self, error: BaseException | None) -> None:
        if error is None:
            outcome = OK
        elif error is self.exhausted:
            outcome = RETRIES_EXHAUSTED
        elif isinstance(error, CommitOutcomeUnknownException):
            outcome = OUTCOME_UNKNOWN
        else:
            outcome = error_outcome(error)
        duration = time.perf_counter() - self.started
        event = StoreCallFinished(
            self.info, outcome, self.attempts, tuple(self.retry_causes), duration, error
        )
        notify(self.listeners, "call_finished", event)


_current: ContextVar[_Call | None] = ContextVar("portfolio_core_store_call", default=None)
_call_ids = itertools.count(1)  # next() of a count is atomic in CPython


def _portfolio_ids(entity_id: object) -> tuple[UUID, ...]:
    """The portfolio ids a store call's entity id names (one id, or a tuple of them)."""
    if isinstance(entity_id, UUID):
        return (entity_id,)
    if isinstance(entity_id, tuple):
        return tuple(pid for pid in entity_id if isinstance(pid, UUID))
    return ()


@contextmanager
def observed_call(
    operation: str,
    entity_id: object = None,
    *,
    lock_mode: str | None = None,
    idempotent: bool = False,
    url: URLParts | None = None,
) -> Iterator[None]:
    """Report the store call run in the ``with`` block to the listeners subscribed now."""
    subscribed = listeners()
    if not subscribed:
        yield
        return
    info = StoreCallInfo(
        call_id=next(_call_ids),
        operation=operation,
        portfolio_ids=_portfolio_ids(entity_id),
        lock_mode=lock_mode,
        idempotent=idempotent,
        database=None if url is None else url.database,
        server_address=None if url is None else url.host,
        server_port=None if url is None else url.port,
    )
    call = _Call(info, subscribed)
    notify(subscribed, "call_started", info)
    token = _current.set(call)
    try:
        yield
    except BaseException as error:
        _current.reset(token)
        call.finish(error)
        raise
    _current.reset(token)
    call.finish(None)


_UNOBSERVED_CALL: AbstractContextManager[None] = nullcontext()


def observed_store_call(
    call: ObservedStoreCall, url: URLParts | None
) -> AbstractContextManager[None]:
    """:func:`observed_call` for a store call (``url``: its store's engine URL)."""
    if not listeners():  # the common case: no generator context built per call
        return _UNOBSERVED_CALL
    return observed_call(
        call.operation,
        call.entity_id,
        lock_mode=call.lock_mode,
        idempotent=call.key is not None,
        url=url,
    )


def observed_attempt() -> AttemptObservation:
    """Report an attempt of the current store call starting (a no-op outside one).

    A retry loop run inside an attempt (a ConcurrencyService.run of the
    caller's own within ``execute``'s operation) is not the store call's: not reported.
    """
    call = _current.get()
    if call is None or call.in_attempt:
        return _UNOBSERVED
    return call.start_attempt()


def note_exhausted(error: BaseException) -> None:
    """Mark ``error`` as the current store call's retry exhaustion (its outcome)."""
    call = _current.get()
    if call is not None and not call.in_attempt:
        call.exhausted = error
