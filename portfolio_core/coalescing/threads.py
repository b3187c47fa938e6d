"""Coalescing for threads: concurrent calls on one portfolio queue up behind one leader.

A caller finding its portfolio's lane idle leads at once (no added latency
for a lone caller). Callers arriving while a leader works queue in arrival
order; the leader takes them into its batch (up to ``max_batch``) and hands
the lead to the first caller still queued: at its batch's COMMIT point (the
batch never runs again after it), so that the next batch waits on the row
lock while the COMMIT is in flight (``overlap``: READ COMMITTED only), else
once it is done. A queued caller waits at most ``wait`` seconds (its lock
timeout and a margin) to be taken,
then leaves the queue with PessimisticLockException (retryable, like a lock
timeout); once taken, the leader owes it an outcome, given in a ``finally``.

A leader takes only callers whose lock timeout is at least its batch's
(:meth:`Batch.fits`; the others stay queued, in order), so no follower
waits on the row longer than it asked. A taken caller waits for its outcome
at most ``wait`` seconds more, then gets CommitOutcomeUnknownException: its
operation may still commit, so it is never told to retry.

A caller interrupted while it waits (KeyboardInterrupt) leaves nothing
behind: it leaves the queue, passes on a lead it was handed, or, taken
before its batch's COMMIT point, is withdrawn (checked under the lock).
The queue itself (:class:`~portfolio_core.coalescing.tickets.Lane`) is the
task coalescer's too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from uuid import UUID

from portfolio_core.coalescing.batch import Batch
from portfolio_core.coalescing.tickets import Lane, Ticket, outcome_overdue, queue_timeout
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from portfolio_core.unit_of_work import UnitOfWork
from portfolio_core.units import Seconds

T = TypeVar("T")

UnitRunner = Callable[[Callable[[PostgreSQLPortfolioRepository], None], Callable[[], None]], None]
"""Runs a body in a fresh unit of work of the store, then the hand-over, then COMMIT (no retry)."""


def unit_runner(unit_of_work: Callable[[], UnitOfWork]) -> UnitRunner:
    """Run a body in ``unit_of_work()`` (the store's: read-your-writes noted) and COMMIT once.

    ``committing`` runs between the body and COMMIT: the lead is handed over
    there, so the next batch starts (and queues on the row lock) while this
    COMMIT is in flight.
    """

    def run(
        body: Callable[[PostgreSQLPortfolioRepository], None], committing: Callable[[], None]
    ) -> None:
        with unit_of_work() as uow:
            body(uow.portfolios)
            committing()
            uow.commit()

    return run


class Wakeup(Protocol):
    """What wakes one queued caller (set once, by whoever owes it its turn)."""

    def set(self) -> None:
        """Wake the waiter."""

    def wait(self, timeout: Seconds | None = None) -> bool:
        """Whether it was set within ``timeout`` seconds (None: no bound)."""


class Signal:
    """A one-shot wake-up: a bare lock its waiter blocks on and its owner releases once.

    Cheaper than ``threading.Event`` (a Condition over two locks); it is set
    exactly once (the lane hands each signal out once), and waited on again
    only after a wait that timed out.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        """Wake the waiter."""
        self._lock.release()

    def wait(self, timeout: Seconds | None = None) -> bool:
        """Whether it was set within ``timeout`` seconds (None: no bound)."""
        return self._lock.acquire(True, -1 if timeout is None else timeout)


new_signal: Callable[[], Wakeup] = Signal
"""How a queued caller's wake-up signal is made (tests replace it to interrupt a waiter)."""


def run_batch(
    batch: Batch, run_unit: UnitRunner, committing: Callable[[], bool] | None = None
) -> None:
    """Run ``batch`` in units of work (again without a culprit), then settle every ticket.

    ``committing`` (called between the body and COMMIT) answers whether it
    handed the lead over: after that the batch never runs again (a failed
    COMMIT fails it, as it would anyway).
    """
    error: BaseException | None = None
    handed = False

    def before_commit() -> None:
        nonlocal handed
        handed = committing() if committing is not None else False

    try:
        while batch.pending:
            try:
                run_unit(batch.body, before_commit)
                break
            except Exception as failure:  # every ticket gets it (translated) from settle
                error = batch.recovered(failure)
                if error is None and handed:
                    error = failure  # the lead is gone: no second unit of work
                if error is not None:
                    break
    except BaseException as failure:  # cancelled, interrupted: the leader's own caller too
        error = failure
        raise
    finally:
        batch.settle(error)


class ThreadCoalescer:
    """The lanes of one store: ``run`` a ticket, as leader or queued behind one."""

    def __init__(
        self,
        unit_of_work: Callable[[], UnitOfWork],
        max_batch: int,
        overlap: Callable[[], bool] = lambda: False,
    ) -> None:
        self._run_unit = unit_runner(unit_of_work)
        self._max_batch = max_batch
        self._overlap = overlap
        """Whether the next batch may start during a COMMIT (``tickets.overlaps_commit``)."""
        self._lock = threading.Lock()
        self._lanes: dict[UUID, Lane[Wakeup]] = {}

    def queued(self, portfolio_id: UUID) -> int:
        """How many callers wait in ``portfolio_id``'s queue now (not those taken)."""
        with self._lock:
            lane = self._lanes.get(portfolio_id)
            return 0 if lane is None else len(lane.queue)

    def run(self, ticket: Ticket[T], wait: Seconds | None) -> T:
        """The ticket's outcome: applied in a batch this thread leads or another does."""
        pid = ticket.request.portfolio_id
        with self._lock:
            lane = self._lanes.get(pid)
            if lane is None:
                self._lanes[pid] = lane = Lane()
                signal = None
            else:
                signal = new_signal()
                lane.enqueue(ticket, signal)
        if signal is not None:
            try:
                self._wait(lane, ticket, signal, wait)
            except BaseException as error:
                if not isinstance(error, Exception):  # interrupted: leave, passing a lead on
                    self._leave(pid, lane, ticket)
                raise
            if not ticket.promoted:
                return ticket.outcome()
        self._lead(pid, lane, ticket)
        return ticket.outcome()

    def _wait(
        self,
        lane: Lane[Wakeup],
        ticket: Ticket[Any],
        signal: Wakeup,
        wait: Seconds | None,
    ) -> None:
        if signal.wait(wait):
            return
        with self._lock:
            if lane.leave(ticket):
                raise queue_timeout(ticket, wait)
        # Taken or promoted meanwhile: an outcome is owed, within ``wait`` more.
        if not signal.wait(wait):
            raise outcome_overdue(ticket, wait)

    def _leave(self, pid: UUID, lane: Lane[Wakeup], ticket: Ticket[Any]) -> None:
        """A waiting caller interrupted (KeyboardInterrupt): its ticket must not stay behind.

        Queued: it leaves the queue. Promoted: the lead passes on (or the lane
        closes), else nobody would lead. Taken, before its batch's COMMIT
        point: withdrawn (the leader runs the batch again without it).
        """
        signals: list[Wakeup] = []
        with self._lock:
            if lane.leave(ticket):
                return
            if ticket.promoted:
                signals = self._release(pid, lane, [])
            elif not ticket.committing:
                ticket.withdrawn = True
        for signal in signals:
            signal.set()

    def _release(self, pid: UUID, lane: Lane[Wakeup], taken: list[Ticket[Any]]) -> list[Wakeup]:
        """Under the lock: the signals of ``taken`` and of the next leader (or close the lane)."""
        signals, closed = lane.release(taken)
        if closed:
            self._close(pid, lane)
        return signals

    def _close(self, pid: UUID, lane: Lane[Wakeup]) -> None:
        if self._lanes.get(pid) is lane:
            del self._lanes[pid]

    def _hand_over(self, pid: UUID, lane: Lane[Wakeup]) -> Wakeup | None:
        """At the COMMIT point: pass the lead to the first caller queued (or close the lane).

        Its batch starts now and waits on the row lock until this COMMIT ends,
        so its client work overlaps this COMMIT's round trip. Called under the
        lock; the caller wakes the successor returned once it noted the hand-over.
        """
        successor = lane.pass_lead()
        if successor is None:
            self._close(pid, lane)
        return successor

    def _take(self, lane: Lane[Wakeup], room: int, batch: Batch) -> list[Ticket[Any]]:
        with self._lock:
            return lane.take(room, batch.fits)

    def _lead(self, pid: UUID, lane: Lane[Wakeup], first: Ticket[Any]) -> None:
        batch = Batch(pid, first.request.lock_timeout, self._max_batch, lambda room: [])
        batch.guard = self._lock  # its COMMIT point and a caller withdrawing: one at a time
        batch.more = lambda room: self._take(lane, room, batch)
        handed = False

        def hand_over() -> bool:
            nonlocal handed
            if not batch.committing or not self._overlap():
                return False
            with self._lock:
                successor = self._hand_over(pid, lane)
                handed = True  # before waking it: an interrupt now must not promote another
            if successor is not None:
                successor.set()
            return True

        try:
            batch.add([first, *self._take(lane, self._max_batch - 1, batch)])
            run_batch(batch, self._run_unit, hand_over)
        finally:
            with self._lock:
                if handed:
                    signals = lane.settled(batch.taken)
                else:
                    signals = self._release(pid, lane, batch.taken)
            for signal in signals:
                signal.set()
