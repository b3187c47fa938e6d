"""Coalescing for asyncio tasks: ``threads``' protocol, one queue per (event loop, portfolio).

The leader task runs :meth:`Batch.body` on an AsyncUnitOfWork's sync side
(``run_sync``) and commits; tasks arriving meanwhile (the loop runs them
while the leader awaits the database) queue and are taken into the batch
from the sync side, on the loop's own thread, so no lock is needed. A queued
task that is cancelled leaves the queue; a promoted one (at the COMMIT point
of its predecessor's batch at READ COMMITTED, after it otherwise, as in
``threads``) that is cancelled
passes the lead on. A taken one that is cancelled before its batch's COMMIT
point is withdrawn: the leader, right before COMMIT, rolls back and runs the
batch again without it (``Batch.body`` raises Withdrawn), so nothing of it
commits. One cancelled after that point waits (shielded, at most ``wait``
seconds) for the outcome, then raises CancelledError like an uncoalesced call
cancelled while its COMMIT was in flight (the outcome may be committed). A
leader cancelled mid-batch still settles every ticket taken
(``Batch.settle``: nothing committed, or outcome unknown during COMMIT).
Taking, and a taken task's wait for its outcome, are bounded as in ``threads``.

A queued task awaits a plain Future of its loop, which the leader resolves
(True) or a timer (False) when the wait's bound runs out: one timer handle
per bounded wait, no task or waiter set as ``asyncio.wait`` would make. Cancelling the
task cancels that Future; a caller whose outcome is still owed then waits
on a fresh one, put in its place in the lane.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from portfolio_core.coalescing.batch import Batch
from portfolio_core.coalescing.tickets import Lane, Ticket, outcome_overdue, queue_timeout
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from portfolio_core.units import Seconds

if TYPE_CHECKING:  # the sync API imports without the async extra (greenlet, asyncpg)
    from portfolio_core.async_unit_of_work import AsyncUnitOfWork

T = TypeVar("T")

AsyncUnitRunner = Callable[
    [Callable[[PostgreSQLPortfolioRepository], None], Callable[[], None]], Awaitable[None]
]
"""Runs a sync body in a fresh AsyncUnitOfWork of the store (``run_sync``), the hand-over,
then COMMIT."""

_Signal = asyncio.Future[bool]
"""True: woken by its owner (outcome given, or lead handed over); False: its wait ran out."""
_LaneKey = tuple[asyncio.AbstractEventLoop, UUID]


def unit_runner(unit_of_work: Callable[[], AsyncUnitOfWork]) -> AsyncUnitRunner:
    """Run a body on ``unit_of_work()``'s sync side (the store's), then COMMIT once.

    ``committing`` runs between the body and COMMIT (``threads.unit_runner``).
    """

    async def run(
        body: Callable[[PostgreSQLPortfolioRepository], None], committing: Callable[[], None]
    ) -> None:
        async with unit_of_work() as uow:
            await uow.run_sync(body)
            committing()
            await uow.commit()

    return run


async def run_batch_async(
    batch: Batch, run_unit: AsyncUnitRunner, committing: Callable[[], bool] | None = None
) -> None:
    """``threads.run_batch`` awaited: the same Batch, settled in a ``finally``."""
    error: BaseException | None = None
    handed = False

    def before_commit() -> None:
        nonlocal handed
        handed = committing() if committing is not None else False

    try:
        while batch.pending:
            try:
                await run_unit(batch.body, before_commit)
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


def _wake(signals: list[_Signal]) -> None:
    for signal in signals:
        if not signal.done():  # a cancelled caller's, or one whose wait ran out: it looks again
            signal.set_result(True)


def _expire(signal: _Signal) -> None:
    if not signal.done():
        signal.set_result(False)


async def _waited(signal: _Signal, wait: Seconds | None) -> bool:
    """Whether ``signal`` was woken within ``wait`` seconds (False: the bound ran out)."""
    if wait is None:
        return await signal
    timer = asyncio.get_running_loop().call_later(wait, _expire, signal)
    try:
        return await signal
    finally:
        timer.cancel()


def _rearmed(lane: Lane[_Signal], ticket: Ticket[Any]) -> _Signal | None:
    """The signal ``ticket`` still waits for (a fresh one if its own is done); None: woken."""
    signal = lane.signals.get(id(ticket))
    if signal is None or not signal.done():
        return signal
    fresh: _Signal = signal.get_loop().create_future()
    lane.signals[id(ticket)] = fresh
    return fresh


class TaskCoalescer:
    """The lanes of one async store: ``run`` a ticket, as leader or queued behind one."""

    def __init__(
        self,
        unit_of_work: Callable[[], AsyncUnitOfWork],
        max_batch: int,
        overlap: Callable[[], bool] = lambda: False,
    ) -> None:
        self._run_unit = unit_runner(unit_of_work)
        self._max_batch = max_batch
        self._overlap = overlap
        """Whether the next batch may start during a COMMIT (``tickets.overlaps_commit``)."""
        self._lanes: dict[_LaneKey, Lane[_Signal]] = {}

    def queued(self, portfolio_id: UUID) -> int:
        """How many tasks of the running loop wait in ``portfolio_id``'s queue now."""
        lane = self._lanes.get((asyncio.get_running_loop(), portfolio_id))
        return 0 if lane is None else len(lane.queue)

    async def run(self, ticket: Ticket[T], wait: Seconds | None) -> T:
        """The ticket's outcome: applied in a batch this task leads or another does."""
        loop = asyncio.get_running_loop()
        key = (loop, ticket.request.portfolio_id)
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = lane = Lane()
        else:
            signal: _Signal = loop.create_future()
            lane.enqueue(ticket, signal)
            try:
                await self._wait(lane, ticket, signal, wait)
            except asyncio.CancelledError:
                if lane.leave(ticket):
                    raise
                if ticket.promoted:
                    self._release(key, lane, [])  # pass the lead on
                elif ticket.committing:  # past the COMMIT point: learn how it ended first
                    owed = _rearmed(lane, ticket)  # its own signal was cancelled with it
                    if owed is not None:
                        await _outcome_shielded(owed, wait)
                else:
                    ticket.withdrawn = True  # the leader leaves it out before COMMIT
                raise
            if not ticket.promoted:
                return ticket.outcome()
        await self._lead(key, lane, ticket)
        return ticket.outcome()

    async def _wait(
        self, lane: Lane[_Signal], ticket: Ticket[Any], signal: _Signal, wait: Seconds | None
    ) -> None:
        if await _waited(signal, wait):
            return
        if lane.leave(ticket):
            raise queue_timeout(ticket, wait)
        # Taken or promoted meanwhile: an outcome is owed, within ``wait`` more.
        owed = _rearmed(lane, ticket)
        if owed is not None and not await _waited(owed, wait):
            raise outcome_overdue(ticket, wait)

    async def _lead(self, key: _LaneKey, lane: Lane[_Signal], first: Ticket[Any]) -> None:
        batch = Batch(key[1], first.request.lock_timeout, self._max_batch, lambda n: [])
        batch.more = lambda n: lane.take(n, batch.fits)
        handed = False

        def hand_over() -> bool:
            """At the COMMIT point: the next batch starts while this COMMIT is in flight."""
            nonlocal handed
            if not batch.committing or not self._overlap():
                return False
            successor = lane.pass_lead()
            if successor is None:
                self._close(key, lane)
            else:
                _wake([successor])
            handed = True
            return True

        try:
            batch.add([first, *lane.take(self._max_batch - 1, batch.fits)])
            await run_batch_async(batch, self._run_unit, hand_over)
        finally:
            if handed:
                _wake(lane.settled(batch.taken))
            else:
                self._release(key, lane, batch.taken)

    def _release(self, key: _LaneKey, lane: Lane[_Signal], taken: list[Ticket[Any]]) -> None:
        """Wake the tickets ``taken``; hand the lead to the first one queued, or close the lane."""
        signals, closed = lane.release(taken)
        if closed:
            self._close(key, lane)
        _wake(signals)

    def _close(self, key: _LaneKey, lane: Lane[_Signal]) -> None:
        if self._lanes.get(key) is lane:  # a lane closed early may have a successor lane
            del self._lanes[key]


_COMMIT_WAIT: Seconds = 5.0
"""How long a cancelled task without a lock timeout waits for its batch's COMMIT, at most."""


async def _outcome_shielded(signal: _Signal, wait: Seconds | None) -> None:
    """Wait (a cancelled task: further cancels too) at most ``wait`` s for the batch's outcome."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (_COMMIT_WAIT if wait is None else wait)
    while not signal.done() and loop.time() < deadline:
        # asyncio.wait never cancels ``signal``; a further cancel of this task
        # only ends one round: the deadline still bounds the wait.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((signal,), timeout=deadline - loop.time())
