"""Coalescing for asyncio tasks: ``threads``' protocol, one queue per (event loop, portfolio).

The leader task runs :meth:`Batch.body` on an AsyncUnitOfWork's sync side
(``run_sync``) and commits; tasks arriving meanwhile (the loop runs them
while the leader awaits the database) queue and are taken into the batch
from the sync side, on the loop's own thread, so no lock is needed. A queued
task that is cancelled leaves the queue; a promoted one that is cancelled
passes the lead on. A taken one that is cancelled before its batch's COMMIT
point is withdrawn: the leader, right before COMMIT, rolls back and runs the
batch again without it (``Batch.body`` raises Withdrawn), so nothing of it
commits. One cancelled after that point waits (shielded, at most ``wait``
seconds) for the outcome, then raises CancelledError like an uncoalesced call
cancelled while its COMMIT was in flight (the outcome may be committed). A
leader cancelled mid-batch still settles every ticket taken
(``Batch.settle``: nothing committed, or outcome unknown during COMMIT).
Taking, and a taken task's wait for its outcome, are bounded as in ``threads``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from portfolio_core.coalescing.batch import Batch, BatchBroken, Withdrawn
from portfolio_core.coalescing.grouped import Fallback
from portfolio_core.coalescing.threads import outcome_overdue, queue_timeout, take
from portfolio_core.coalescing.tickets import Ticket
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from portfolio_core.units import Seconds

if TYPE_CHECKING:  # the sync API imports without the async extra (greenlet, asyncpg)
    from portfolio_core.async_unit_of_work import AsyncUnitOfWork

T = TypeVar("T")

AsyncUnitRunner = Callable[[Callable[[PostgreSQLPortfolioRepository], None]], Awaitable[None]]
"""Runs a sync body in a fresh AsyncUnitOfWork of the store (``run_sync``) and commits it."""


def unit_runner(unit_of_work: Callable[[], AsyncUnitOfWork]) -> AsyncUnitRunner:
    """Run a body on ``unit_of_work()``'s sync side (the store's), then COMMIT once."""

    async def run(body: Callable[[PostgreSQLPortfolioRepository], None]) -> None:
        async with unit_of_work() as uow:
            await uow.run_sync(body)
            await uow.commit()

    return run


_LaneKey = tuple[asyncio.AbstractEventLoop, UUID]


class _Lane:
    __slots__ = ("queue", "signals")

    def __init__(self) -> None:
        self.queue: deque[Ticket[Any]] = deque()
        self.signals: dict[int, asyncio.Event] = {}


async def run_batch_async(batch: Batch, run_unit: AsyncUnitRunner) -> None:
    """``threads.run_batch`` awaited: the same Batch, settled in a ``finally``."""
    error: BaseException | None = None
    try:
        while batch.pending:
            try:
                await run_unit(batch.body)
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


class TaskCoalescer:
    """The lanes of one async store: ``run`` a ticket, as leader or queued behind one."""

    def __init__(self, unit_of_work: Callable[[], AsyncUnitOfWork], max_batch: int) -> None:
        self._run_unit = unit_runner(unit_of_work)
        self._max_batch = max_batch
        self._lanes: dict[_LaneKey, _Lane] = {}

    def queued(self, portfolio_id: UUID) -> int:
        """How many tasks of the running loop wait in ``portfolio_id``'s queue now."""
        lane = self._lanes.get((asyncio.get_running_loop(), portfolio_id))
        return 0 if lane is None else len(lane.queue)

    async def run(self, ticket: Ticket[T], wait: Seconds | None) -> T:
        """The ticket's outcome: applied in a batch this task leads or another does."""
        key = (asyncio.get_running_loop(), ticket.request.portfolio_id)
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = lane = _Lane()
        else:
            signal = lane.signals[id(ticket)] = asyncio.Event()
            lane.queue.append(ticket)
            try:
                await self._wait(lane, ticket, signal, wait)
            except asyncio.CancelledError:
                if ticket in lane.queue:
                    lane.queue.remove(ticket)
                    del lane.signals[id(ticket)]
                elif ticket.promoted:
                    self._release(key, lane, [])  # pass the lead on
                elif ticket.committing:  # past the COMMIT point: learn how it ended first
                    await _outcome_shielded(signal, wait)
                else:
                    ticket.withdrawn = True  # the leader leaves it out before COMMIT
                raise
            if not ticket.promoted:
                return ticket.outcome()
        await self._lead(key, lane, ticket)
        return ticket.outcome()

    async def _wait(
        self, lane: _Lane, ticket: Ticket[Any], signal: asyncio.Event, wait: Seconds | None
    ) -> None:
        try:
            await asyncio.wait_for(signal.wait(), wait)
        except TimeoutError:
            if ticket in lane.queue:
                lane.queue.remove(ticket)
                del lane.signals[id(ticket)]
                raise queue_timeout(ticket, wait) from None
            # Taken or promoted meanwhile: an outcome is owed, within ``wait`` more.
            try:
                await asyncio.wait_for(signal.wait(), wait)
            except TimeoutError:
                raise outcome_overdue(ticket, wait) from None

    async def _lead(self, key: _LaneKey, lane: _Lane, first: Ticket[Any]) -> None:
        batch = Batch(key[1], first.request.lock_timeout, self._max_batch, lambda n: [])
        batch.more = lambda n: take(lane.queue, n, batch)
        try:
            batch.add([first, *take(lane.queue, self._max_batch - 1, batch)])
            await run_batch_async(batch, self._run_unit)
        finally:
            self._release(key, lane, batch.taken)

    def _release(self, key: _LaneKey, lane: _Lane, taken: list[Ticket[Any]]) -> None:
        """Wake the tickets ``taken``; hand the lead to the first one queued, or close the lane."""
        signals = [lane.signals.pop(id(t)) for t in taken if id(t) in lane.signals]
        if lane.queue:
            successor = lane.queue.popleft()
            successor.promoted = True
            signals.append(lane.signals.pop(id(successor)))
        else:
            del self._lanes[key]
        for signal in signals:
            signal.set()


_COMMIT_WAIT: Seconds = 5.0
"""How long a cancelled task without a lock timeout waits for its batch's COMMIT, at most."""


async def _outcome_shielded(signal: asyncio.Event, wait: Seconds | None) -> None:
    """Wait (a cancelled task: further cancels too) at most ``wait`` s for the batch's outcome."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (_COMMIT_WAIT if wait is None else wait)
    waiting = asyncio.ensure_future(signal.wait())
    try:
        while not waiting.done() and loop.time() < deadline:
            # asyncio.wait never cancels ``waiting``; a further cancel of this
            # task only ends one round: the deadline still bounds the wait.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({waiting}, timeout=deadline - loop.time())
    finally:
        waiting.cancel()
