"""Coalescing for threads: concurrent calls on one portfolio queue up behind one leader.

A caller finding its portfolio's lane idle leads at once (no added latency
for a lone caller). Callers arriving while a leader works queue in arrival
order; the leader takes them into its batch (up to ``max_batch``), and when
it is done hands the lead to the first caller still queued. A queued caller
waits at most ``wait`` seconds (its lock timeout and a margin) to be taken,
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
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from portfolio_core.coalescing.batch import Batch, BatchBroken, Withdrawn
from portfolio_core.coalescing.grouped import Fallback
from portfolio_core.coalescing.tickets import Ticket
from portfolio_core.errors import CommitOutcomeUnknownException, PessimisticLockException
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from portfolio_core.unit_of_work import UnitOfWork
from portfolio_core.units import Seconds

T = TypeVar("T")

UnitRunner = Callable[[Callable[[PostgreSQLPortfolioRepository], None]], None]
"""Runs a body in a fresh unit of work of the store and commits it (no retry)."""


def unit_runner(unit_of_work: Callable[[], UnitOfWork]) -> UnitRunner:
    """Run a body in ``unit_of_work()`` (the store's: read-your-writes noted) and COMMIT once."""

    def run(body: Callable[[PostgreSQLPortfolioRepository], None]) -> None:
        with unit_of_work() as uow:
            body(uow.portfolios)
            uow.commit()

    return run


class _Lane:
    """One portfolio's queue: the callers waiting and whether a leader is at work."""

    __slots__ = ("queue", "signals")

    def __init__(self) -> None:
        self.queue: deque[Ticket[Any]] = deque()
        self.signals: dict[int, threading.Event] = {}


new_signal: Callable[[], threading.Event] = threading.Event
"""How a queued caller's wake-up signal is made (tests replace it to interrupt a waiter)."""


def queue_timeout(ticket: Ticket[Any], waited: Seconds | None) -> PessimisticLockException:
    """The error of a caller that was not taken into a batch within ``waited`` seconds."""
    return PessimisticLockException(
        f"waited {waited} s in the coalescing queue of portfolio {ticket.request.portfolio_id}",
        entity_type="Portfolio",
        entity_id=ticket.request.portfolio_id,
        timeout=waited,
    )


def outcome_overdue(ticket: Ticket[Any], waited: Seconds | None) -> CommitOutcomeUnknownException:
    """The error of a caller taken into a batch that gave no outcome within ``waited`` more s."""
    return CommitOutcomeUnknownException(
        f"taken into a coalesced batch of portfolio {ticket.request.portfolio_id}, "
        f"no outcome within {waited} s: it may still commit",
        entity_type="Portfolio",
        entity_id=ticket.request.portfolio_id,
    )


def take(queue: deque[Ticket[Any]], room: int, batch: Batch) -> list[Ticket[Any]]:
    """Up to ``room`` tickets from ``queue`` that ``batch.fits``, in order; the others stay."""
    taken: list[Ticket[Any]] = []
    for ticket in list(queue):
        if len(taken) >= room:
            break
        if batch.fits(ticket):
            queue.remove(ticket)
            taken.append(ticket)
    return taken


def run_batch(batch: Batch, run_unit: UnitRunner) -> None:
    """Run ``batch`` in units of work (again without a culprit), then settle every ticket."""
    error: BaseException | None = None
    try:
        while batch.pending:
            try:
                run_unit(batch.body)
                break
            except Withdrawn:
                batch.drop_withdrawn()
            except BatchBroken as broken:
                if not batch.drop_culprit(broken):
                    error = broken.error
                    break
            except Fallback as fallback:
                if not batch.fall_back(fallback):
                    error = fallback.__cause__ or fallback
                    break
    except Exception as failure:  # every ticket gets it (translated) from settle
        error = failure
    except BaseException as failure:  # cancelled, interrupted: the leader's own caller too
        error = failure
        raise
    finally:
        batch.settle(error)


class ThreadCoalescer:
    """The lanes of one store: ``run`` a ticket, as leader or queued behind one."""

    def __init__(self, unit_of_work: Callable[[], UnitOfWork], max_batch: int) -> None:
        self._run_unit = unit_runner(unit_of_work)
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._lanes: dict[UUID, _Lane] = {}

    def queued(self, portfolio_id: UUID) -> int:
        """How many callers wait in ``portfolio_id``'s queue now (not those taken)."""
        with self._lock:
            lane = self._lanes.get(portfolio_id)
            return 0 if lane is None else len(lane.queue)

    def run(self, ticket: Ticket[T], wait: Seconds | None) -> T:
        """The ticket's outcome: applied in a batch this thread leads or another does."""
        pid = ticket.request.portfolio_id
        signal = new_signal()
        with self._lock:
            lane = self._lanes.get(pid)
            if lane is None:
                self._lanes[pid] = lane = _Lane()
                lead = True
            else:
                lane.queue.append(ticket)
                lane.signals[id(ticket)] = signal
                lead = False
        if not lead:
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
        self, lane: _Lane, ticket: Ticket[Any], signal: threading.Event, wait: Seconds | None
    ) -> None:
        if signal.wait(wait):
            return
        with self._lock:
            if ticket in lane.queue:
                lane.queue.remove(ticket)
                del lane.signals[id(ticket)]
                raise queue_timeout(ticket, wait)
        # Taken or promoted meanwhile: an outcome is owed, within ``wait`` more.
        if not signal.wait(wait):
            raise outcome_overdue(ticket, wait)

    def _leave(self, pid: UUID, lane: _Lane, ticket: Ticket[Any]) -> None:
        """A waiting caller interrupted (KeyboardInterrupt): its ticket must not stay behind.

        Queued: it leaves the queue. Promoted: the lead passes on (or the lane
        closes), else nobody would lead. Taken, before its batch's COMMIT
        point: withdrawn (the leader runs the batch again without it).
        """
        signals: list[threading.Event] = []
        with self._lock:
            if ticket in lane.queue:
                lane.queue.remove(ticket)
                lane.signals.pop(id(ticket), None)
            elif ticket.promoted:
                signals = self._promote_next(pid, lane)
            elif not ticket.committing:
                ticket.withdrawn = True
        for signal in signals:
            signal.set()

    def _promote_next(self, pid: UUID, lane: _Lane) -> list[threading.Event]:
        """Under the lock: hand the lead to the first caller queued, or close the lane."""
        if lane.queue:
            successor = lane.queue.popleft()
            successor.promoted = True
            return [lane.signals.pop(id(successor))]
        del self._lanes[pid]
        return []

    def _take(self, lane: _Lane, room: int, batch: Batch) -> list[Ticket[Any]]:
        with self._lock:
            return take(lane.queue, room, batch)

    def _lead(self, pid: UUID, lane: _Lane, first: Ticket[Any]) -> None:
        batch = Batch(pid, first.request.lock_timeout, self._max_batch, lambda room: [])
        batch.guard = self._lock  # its COMMIT point and a caller withdrawing: one at a time
        batch.more = lambda room: self._take(lane, room, batch)
        try:
            batch.add([first, *self._take(lane, self._max_batch - 1, batch)])
            run_batch(batch, self._run_unit)
        finally:
            with self._lock:
                signals = [lane.signals.pop(id(t)) for t in batch.taken if id(t) in lane.signals]
                signals.extend(self._promote_next(pid, lane))
            for signal in signals:
                signal.set()
