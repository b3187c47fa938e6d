"""What a coalescing leader does in one unit of work: the queued operations, in order.

Shared by the thread coalescer (``threads``) and the asyncio one (``tasks``):
they only decide who leads and hand :meth:`Batch.body` to a unit of work
(sync, or an AsyncUnitOfWork's ``run_sync``), then call :meth:`Batch.settle`.

The leader locks the portfolio's row (FOR UPDATE, bounded by the lock
timeout) and applies the tickets in arrival order, taking more from the
queue while it works (up to the batch size). A batch of N changing
operations advances the version by N with N events at consecutive versions,
each with its own idempotency key, so replay(v) after each event is what
that caller saw. One COMMIT ends the batch.

The fast way first (``grouped``): every operation applied in Python, then
one UPDATE and one INSERT each for the events and the keys. If anything is
unusual (an operation raises, a write fails) the unit of work is rolled
back and the batch runs again the slow way, one change per operation: after
each, the session is flushed and its event written (:func:`end_change`).
There an operation that raises leaves no trace: the aggregate is dropped
from the session and reloaded in the same transaction (row lock kept),
where the database holds exactly the changes flushed before it. A failure
that breaks the transaction (a database error of one operation's flush)
ends the unit of work: the operation gets its error and the others run
again in a fresh unit of work (operations are re-runnable: retries re-run
them anyway). A transient failure (connection lost, lock timeout, deadlock,
a failed or lost COMMIT) fails every ticket with the same classified error,
and each caller's own retry policy (and commit outcome resolution) takes over.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from portfolio_core.coalescing.detached import detached_copy
from portfolio_core.coalescing.grouped import Fallback, Grouped
from portfolio_core.coalescing.tickets import Ticket
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import (
    CommitOutcomeUnknownException,
    ConcurrencyException,
    ConnectionLostError,
    DatabaseConnectionError,
    PortfolioCoreError,
    StatementTimeoutError,
)
from portfolio_core.exactly_once import execute_with_key
from portfolio_core.persistence.errors import translate, translated
from portfolio_core.persistence.repository import PostgreSQLPortfolioRepository
from portfolio_core.persistence.session import write_events
from portfolio_core.persistence.transaction_state import transaction_state
from portfolio_core.store_call import check_version, load_for_change
from portfolio_core.units import Seconds

T = TypeVar("T")


class Withdrawn(Exception):
    """A ticket's caller left before the COMMIT point: roll back, run the others again."""


class BatchBroken(Exception):
    """The transaction can not go on: ``culprit``'s operation failed with ``error``."""

    def __init__(self, culprit: Ticket[Any], error: BaseException) -> None:
        super().__init__(str(error))
        self.culprit = culprit
        self.error = error


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is the database's trouble (retryable), not one operation's fault."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    transient = (
        ConcurrencyException,
        DatabaseConnectionError,
        StatementTimeoutError,
        OperationalError,
        InterfaceError,
    )
    return isinstance(error, transient)


def end_change(session: Session, portfolio: Portfolio) -> None:
    """Flush one operation's change and write its event; the next one starts a new change.

    Driver errors come out raw (the caller translates them).

    The event goes in at the version the flush gave the portfolio (the audit
    trigger admits exactly that), carrying the key the operation claimed.
    """
    session.flush()
    write_events(session)
    portfolio._take_pending_operations()
    for held in transaction_state(session).held_portfolios.values():
        held._take_pending_operations()
    _new_change(session)


def _new_change(session: Session) -> None:
    """Reset the transaction's state so that the next flush is a change of its own."""
    state = transaction_state(session)
    state.start_versions.update(state.written_versions)
    state.events_written = False
    state.idempotency_key = None
    state.held_portfolios.clear()
    state.sql_operations.clear()
    state.recorded_at_flush.clear()


@dataclass(eq=False)
class Batch:
    """A leader's batch: the tickets it owes an outcome, and the unit-of-work body applying them."""

    portfolio_id: UUID
    lock_timeout: Seconds | None
    max_size: int
    more: Callable[[int], list[Ticket[Any]]]
    """Takes up to n more tickets from the queue (they are then owed an outcome)."""
    taken: list[Ticket[Any]] = field(default_factory=list)
    pending: list[Ticket[Any]] = field(default_factory=list)
    committing: bool = False
    per_operation: bool = False
    """One flush and event per operation (after the fast way fell back)."""
    _portfolio: Any = None
    guard: AbstractContextManager[Any] = field(default_factory=nullcontext)
    """Held at the COMMIT point (the thread coalescer's lock: callers withdraw under it)."""

    def add(self, tickets: list[Ticket[Any]]) -> None:
        """Owe ``tickets`` an outcome and apply them in this batch."""
        self.taken.extend(tickets)
        self.pending.extend(tickets)

    def body(self, repository: PostgreSQLPortfolioRepository) -> None:
        """Lock the row, apply every pending ticket (and more arriving), then leave COMMIT.

        The fast way first (``grouped``); after a Fallback, one change per operation.
        """
        for ticket in self.pending:
            ticket.reset()
        # One statement, its lock timeout kept until COMMIT (as a lone "wait" call).
        portfolio = load_for_change(repository, self.portfolio_id, "wait", self.lock_timeout)
        if self.per_operation:
            self._each(lambda ticket: self._apply_flushed(repository, ticket), portfolio)
        else:
            grouped = Grouped(repository, portfolio)
            grouped.look_up(self.pending)  # the keys: one SELECT, and one per extension
            self._each(grouped.apply, portfolio, grouped.look_up)
            grouped.write()
        # The COMMIT point: a caller gone before it (a cancelled task) is left
        # out (rare: the batch runs again); one gone after it is owed an
        # outcome that may be committed. No await lies between the check and
        # the flags, so a task cancelled meanwhile sees one or the other.
        with self.guard:
            if any(ticket.withdrawn for ticket in self.pending):
                raise Withdrawn
            self.committing = True  # what follows is the unit of work's COMMIT
            for ticket in self.pending:
                ticket.committing = True

    def _each(
        self,
        apply: Callable[[Ticket[Any]], None],
        portfolio: Portfolio,
        added: Callable[[list[Ticket[Any]]], None] = lambda tickets: None,
    ) -> None:
        """``apply`` every pending ticket in order, taking more from the queue until it is full."""
        self._portfolio = portfolio
        index = 0
        while True:
            while index < len(self.pending):
                apply(self.pending[index])
                index += 1
            room = self.max_size - len(self.taken)
            extra = self.more(room) if room > 0 else []
            if not extra:
                return
            self.add(extra)
            added(extra)

    def _apply_flushed(
        self, repository: PostgreSQLPortfolioRepository, ticket: Ticket[Any]
    ) -> None:
        self._portfolio = self._apply(repository, self._portfolio, ticket)

    def _apply(
        self, repository: PostgreSQLPortfolioRepository, portfolio: Portfolio, ticket: Ticket[Any]
    ) -> Portfolio:
        session = repository.session
        transaction = session.get_transaction()
        request = ticket.request
        pid = self.portfolio_id

        def check() -> None:
            check_version(pid, request.expected, portfolio.version)

        try:
            with translated(entity_type="Portfolio", entity_id=pid):
                if request.call.key is None:
                    check()
                    result = request.operation(portfolio)
                else:
                    result, request.call.fingerprint = execute_with_key(
                        session, request.call.key, pid, portfolio, request.operation, check
                    )
                end_change(session, portfolio)
                result = detached_copy(result)  # later operations change the live objects
        except Exception as error:
            ticket.error = error
            return self._discard(repository, portfolio, ticket, transaction, error)
        ticket.result, ticket.version = result, portfolio.version
        request.version = portfolio.version  # also what a lost COMMIT resolved through the key gets
        return portfolio

    def _discard(
        self,
        repository: PostgreSQLPortfolioRepository,
        portfolio: Portfolio,
        ticket: Ticket[Any],
        transaction: object,
        error: Exception,
    ) -> Portfolio:
        """The portfolio as the database holds it (the changes before ``ticket``'s)."""
        session = repository.session
        current = session.get_transaction()
        if current is None or current is not transaction or not current.is_active:
            raise BatchBroken(ticket, error)  # a failed flush ended the transaction
        portfolio._take_pending_operations()
        session.expunge_all()
        _new_change(session)
        try:
            return repository.get(self.portfolio_id)
        except Exception as reload_error:  # the operation's SQL aborted the transaction
            raise BatchBroken(ticket, error) from reload_error

    def recovered(self, failure: Exception) -> BaseException | None:
        """After a unit of work raised ``failure``: None to run it again, else the batch's error.

        Withdrawn callers are left out, a culprit that broke the transaction
        gets its own error, a failed fast way falls back to one change per
        operation; anything else (or a second time) ends the batch.
        """
        if isinstance(failure, Withdrawn):
            self.drop_withdrawn()
            return None
        if isinstance(failure, BatchBroken):
            return None if self.drop_culprit(failure) else failure.error
        if isinstance(failure, Fallback):
            return None if self.fall_back(failure) else (failure.__cause__ or failure)
        return failure

    def fall_back(self, fallback: Fallback) -> bool:
        """After the fast way failed: True to run again one change per operation."""
        # Whatever the cause: the slow way attributes an operation's failure to
        # it, and a transient one (a lost connection) meets a fresh unit of work.
        if self.per_operation:
            return False
        self.per_operation = True
        return True

    def drop_withdrawn(self) -> None:
        """After :class:`Withdrawn`: run again without the tickets whose callers left."""
        self.pending = [ticket for ticket in self.pending if not ticket.withdrawn]

    def fits(self, ticket: Ticket[Any]) -> bool:
        """Whether ``ticket`` may join: its lock timeout is at least the batch's.

        A follower never waits on the row longer than it asked (None: no bound,
        so a leader without one takes only followers without one).
        """
        own = ticket.request.lock_timeout
        if own is None:
            return True
        return self.lock_timeout is not None and own >= self.lock_timeout

    def drop_culprit(self, broken: BatchBroken) -> bool:
        """After a broken unit of work: True to run the others again without the culprit."""
        if is_transient(broken.error):
            return False
        broken.culprit.error, broken.culprit.final = broken.error, True
        self.pending = [ticket for ticket in self.pending if not ticket.final]
        return True

    def settle(self, error: BaseException | None) -> None:
        """Give every ticket taken its outcome: its own, or the batch's ``error``."""
        if isinstance(error, DBAPIError):  # not translated on its way out
            translated_error = translate(
                error, entity_type="Portfolio", entity_id=self.portfolio_id
            )
            error = error if translated_error is None else translated_error
        if error is not None and not isinstance(error, Exception):
            error = _leader_gone(error, self.committing, self.portfolio_id)
        for ticket in self.taken:
            # An operation that already got its own error left no trace (rolled
            # back, or never written): the batch's error does not replace it.
            if error is not None and not ticket.final and ticket.error is None:
                ticket.error = error
            elif ticket.error is None and ticket.version is None:
                ticket.error = PortfolioCoreError("the coalescing leader did not reach it")


def _leader_gone(error: BaseException, committing: bool, pid: UUID) -> PortfolioCoreError:
    """What followers get when their leader was interrupted (cancelled, Ctrl-C)."""
    if committing:
        return CommitOutcomeUnknownException(
            f"the coalescing leader was interrupted ({type(error).__name__}) during COMMIT",
            entity_type="Portfolio",
            entity_id=pid,
        )
    return ConnectionLostError(
        f"the coalescing leader was interrupted ({type(error).__name__}) before COMMIT: "
        "nothing was committed"
    )
