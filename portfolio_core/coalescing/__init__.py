"""Operation coalescing (group commit) for ``execute`` on a hot portfolio.

``PortfolioStore(engine, coalesce=True)`` (or ``execute(..., coalesce=True)``):
concurrent ``execute`` calls on the same portfolio from the threads (or the
asyncio tasks of one loop) of a process queue up; one leader takes the row
lock, applies the queued operations in arrival order, one change and one
audit event each, and COMMITs once; each caller gets its own result or its
own exception, and its own retry policy handles a batch that failed.

* ``batch``: what the leader does in one unit of work (shared by both);
* ``tickets``: a caller's request and attempt, and a portfolio's queue (shared);
* ``threads``: who leads and the hand-over for threads;
* ``tasks``: the same for asyncio tasks.

A coalesced call always row-locks: ``lock`` must be ``"auto"`` (the default)
or ``"wait"``; with ``coalesce=True`` another mode is a ValidationError, and
with the store's default (``coalesce=None``) an explicit ``"optimistic"`` or
``"nowait"`` runs that call uncoalesced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from portfolio_core import store_call, store_work
from portfolio_core.coalescing.batch import Batch
from portfolio_core.coalescing.tasks import TaskCoalescer
from portfolio_core.coalescing.threads import ThreadCoalescer
from portfolio_core.coalescing.tickets import CoalescedCall, Ticket, overlaps_commit
from portfolio_core.domain import arguments
from portfolio_core.domain.arguments import PortfolioId
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import PortfolioCoreError, ValidationError
from portfolio_core.persistence.repository import as_portfolio_id
from portfolio_core.units import Seconds

T = TypeVar("T")

__all__ = [
    "DEFAULT_MAX_BATCH",
    "QUEUE_MARGIN",
    "Batch",
    "CoalescedCall",
    "TaskCoalescer",
    "ThreadCoalescer",
    "Ticket",
    "checked_max_batch",
    "committed_version",
    "overlaps_commit",
    "queue_wait",
    "request",
    "wanted",
]

DEFAULT_MAX_BATCH = 64
"""Operations one leader applies in one transaction, at most."""
QUEUE_MARGIN: Seconds = 5.0
"""At most this many seconds (and at most its lock timeout again) a queued caller waits
beyond its lock timeout before leaving the queue."""
_COALESCABLE = ("auto", "wait")


def checked_max_batch(value: int) -> int:
    """``coalesce_max_batch``: an int of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError("coalesce_max_batch", value, "must be an int >= 1")
    return value


def wanted(coalesce: bool | None, store_default: bool, lock: str) -> bool:
    """Whether an ``execute`` is coalesced: its ``coalesce=``, else the store's default.

    ``coalesce=True`` with a lock mode other than "auto"/"wait" is a
    ValidationError; the store's default leaves such a call uncoalesced.
    """
    if coalesce is None:
        return store_default and lock in _COALESCABLE
    if not isinstance(coalesce, bool):
        raise ValidationError("coalesce", coalesce, "must be True, False or None")
    if coalesce and lock not in _COALESCABLE:
        raise ValidationError("lock", lock, f"must be one of {_COALESCABLE} when coalescing")
    return coalesce


def request(
    portfolio_id: PortfolioId,
    operation: Callable[[Portfolio], T],
    lock: str,
    lock_timeout: Seconds | None,
    idempotency_key: str | None,
    expected_version: int | None,
    wait_lock_timeout: Seconds | None,
) -> CoalescedCall[T]:
    """A coalesced ``execute``: validated as an uncoalesced one (its StoreCall is observed)."""
    call = store_work.execute(
        portfolio_id,
        operation,
        lock,
        lock_timeout,
        idempotency_key,
        expected_version,
        wait_lock_timeout,
    )
    timeout = arguments.lock_timeout(wait_lock_timeout if lock_timeout is None else lock_timeout)
    return CoalescedCall(
        call,
        as_portfolio_id(portfolio_id),
        operation,
        store_call.checked_expected(expected_version),
        timeout,
    )


def queue_wait(request: CoalescedCall[T]) -> Seconds | None:
    """How long a queued caller waits to be taken into a batch (then PessimisticLockException).

    Its lock timeout plus a margin (the lock timeout again, at most QUEUE_MARGIN);
    None (no bound) when its lock timeout is None: the leader's row lock wait is unbounded too.
    """
    timeout = request.lock_timeout
    return None if timeout is None else timeout + min(timeout, QUEUE_MARGIN)


def committed_version(request: CoalescedCall[T]) -> int:
    """The version right after the call's operation (``execute_versioned``'s ETag)."""
    if request.version is None:
        raise PortfolioCoreError("the coalesced call has not run")
    return request.version
