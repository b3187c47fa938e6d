"""PortfolioSession and everything it remembers about the transaction in progress.

One :class:`~portfolio_core.persistence.transaction_state.TransactionState`
per transaction (``persistence.transaction_state``) holds what the hooks
below need. It is dropped in one place, :func:`_end_of_transaction`, when
the outermost transaction ends.

The hooks, one listener per event, registered here and nowhere else (the
mapper hooks refusing other Sessions are ``write_guards.install_session_guard``):

* ``after_begin``: the transaction now holds a connection;
* ``before_flush``: refuse a change no operation recorded
  (``persistence.write_guards``), bump each touched aggregate's version once
  per transaction (``mapping`` sets ``version_id_generator=False`` on
  portfolios), then hold the portfolios that have pending operations;
* ``before_commit``: write the audit events (``persistence.events``) of a
  session committed some other way than :meth:`PortfolioSession.commit`;
* ``after_commit``: note the outcome for the end of the transaction;
* ``after_soft_rollback``: a rolled-back savepoint may have undone a bump,
  so the written versions are forgotten (the database is read instead);
* ``after_transaction_end``: clear the committed (or rolled-back) operations
  and drop the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.util import identity_key

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position, utcnow
from portfolio_core.persistence import events
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.mapping import start_mappers
from portfolio_core.persistence.row_flush import EventRows, flush_portfolio_rows
from portfolio_core.persistence.stale_versions import stale_conflict
from portfolio_core.persistence.transaction_state import (
    STATE_KEY,
    TransactionState,
    current_state,
    pending_operations,
    recording_portfolios,
    transaction_state,
)
from portfolio_core.persistence.write_guards import install_session_guard, refuse_unrecorded

start_mappers()


def write_events(session: Session) -> list[tuple[UUID, int]]:
    """Flush, then write this transaction's audit events; their (portfolio_id, version).

    Once per transaction (later calls do nothing). PortfolioSession.commit
    calls it before COMMIT; so does the ``before_commit`` hook.
    """
    state = transaction_state(session)
    if state.events_written:
        return []
    session.flush()
    written = events.insert_events(
        session,
        pending_operations(session),
        start_versions=state.start_versions,
        written_versions=state.written_versions,
        idempotency_key=state.idempotency_key,
    )
    state.events_written = True
    return written


def _events_with_rows(
    session: Session, portfolio_ids: list[UUID]
) -> dict[UUID, dict[str, Any]] | None:
    """This transaction's events if ``row_flush`` can write each with its row
    (``events.row_events``), then marked written: :func:`write_events` adds nothing."""
    state = transaction_state(session)
    if state.events_written or state.sql_operations:
        return None
    rows = events.row_events(
        portfolio_ids,
        pending_operations(session),
        start_versions=state.start_versions,
        written_versions=state.written_versions,
        idempotency_key=state.idempotency_key,
    )
    state.events_written = rows is not None
    return rows


class PortfolioSession(Session):
    """The Session used by units of work: aggregate versioning and audit hooks attached.

    A version conflict found by any flush (the unit of work's, COMMIT's own,
    or one the caller asks for with ``uow.session.flush()``) comes out as
    StaleDataException with the versions re-read, never as StaleDataError.
    """

    def commit(self) -> None:
        """Flush and write the audit events, then COMMIT, with errors translated.

        Whoever calls it (``uow.commit()``, ``uow.session.commit()``, an
        AsyncSession's sync side): a failure before COMMIT is definite, a
        connection lost while COMMIT is in flight is CommitOutcomeUnknownException.
        """
        with translated():
            self._flush_checked(None, _events_with_rows)
            write_events(self)  # unless the flush wrote them with the rows
        with translated(during_commit=True):
            super().commit()

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        """Flush; a version conflict rolls back and raises StaleDataException.

        Changed portfolio columns alone are written without the ORM's unit of
        work (``persistence.row_flush``); anything else goes through it.
        """
        self._flush_checked(objects, None)

    def _flush_checked(self, objects: Sequence[Any] | None, event_rows: EventRows | None) -> None:
        """:meth:`flush`; with ``event_rows`` (COMMIT's last flush, a batch's write) the
        events it answers go with the rows (``row_flush``)."""
        try:
            if objects is None and not self._flushing:
                self._flushing = True
                try:
                    if flush_portfolio_rows(self, _prepare_flush, event_rows):
                        return
                finally:
                    self._flushing = False
            super().flush(objects)
        except StaleDataError as error:
            state = current_state(self)
            flushed = state.flushed_versions if state is not None else []
            self.rollback()
            raise stale_conflict(self, flushed) from error


def flush_with_batch_events(
    session: PortfolioSession, events: Mapping[UUID, Mapping[str, Any]]
) -> bool:
    """``session.flush()``, writing a coalesced batch's ``events`` with their rows if lean.

    Internal to ``coalescing.grouped`` (not a method: a unit of work's caller
    reaching ``uow.session`` must not be able to replace its audit events).
    ``events``: each changed portfolio's events as ``row_flush`` takes them;
    their versions must run from the loaded version + 1 to the new one
    (``row_flush`` checks). True: written, and this transaction's events are
    marked written; False: the ORM flushed, the events are still to be written.
    """
    answered: list[bool] = []

    def rows(_: Session, ids: list[UUID]) -> Mapping[UUID, Mapping[str, Any]] | None:
        if set(ids) != events.keys():
            return None
        answered.append(True)
        return events

    session._flush_checked(None, rows)
    if answered:
        transaction_state(session).events_written = True
    return bool(answered)


def _owning_portfolio(session: Session, position: Position) -> Portfolio | None:
    if position.portfolio_id is None:
        return None
    found = session.identity_map.get(identity_key(Portfolio, (position.portfolio_id,)))
    if found is None:
        # A position changed without its portfolio loaded: load the root so the
        # aggregate's version still moves (and is checked).
        found = session.get(Portfolio, position.portfolio_id)
    return found if isinstance(found, Portfolio) else None


def _bump_aggregate_versions(session: Session, state: TransactionState) -> None:
    """Bump each changed aggregate's portfolio version once per transaction."""
    roots: dict[UUID, Portfolio] = {}
    # Portfolios is_modified already answered True for: asked once per flush
    # (it reads every attribute's history; the last loop needs the same answer).
    modified: set[UUID] = set()
    flushed: list[tuple[str, object, int, object]] = []
    # Each of these properties builds a new set: take them once.
    new, deleted = session.new, session.deleted
    for obj in (*new, *session.dirty, *deleted):
        if isinstance(obj, Portfolio):
            if obj not in new and obj in deleted:
                roots[obj.id] = obj
            elif obj not in new and session.is_modified(obj):
                roots[obj.id] = obj
                modified.add(obj.id)
        elif isinstance(obj, Position):
            if obj not in new:
                if not session.is_modified(obj) and obj not in deleted:
                    continue
                flushed.append(("Position", obj.id, obj._version, obj.portfolio_id))
            owner = _owning_portfolio(session, obj)
            if owner is not None and owner not in new:
                roots[owner.id] = owner
    for obj in new:
        if isinstance(obj, Portfolio):
            # Its INSERT is this transaction's change: a later flush of the
            # same unit of work must not bump it again.
            state.start_versions.setdefault(obj.id, obj._version - 1)
            state.written_versions[obj.id] = obj._version
    refuse_unrecorded(state.recorded_at_flush, state.sql_operations, roots, deleted)
    for portfolio_id, portfolio in roots.items():
        flushed.append(("Portfolio", portfolio_id, portfolio._version, portfolio_id))
        bumped = state.needs_bump(portfolio_id, portfolio._version)
        if bumped:
            portfolio._version = portfolio._version + 1
            portfolio.last_updated = utcnow()
        if portfolio not in deleted and (
            bumped or portfolio_id in modified or session.is_modified(portfolio)
        ):
            # This flush UPDATEs the row WHERE version = loaded version: if it
            # succeeds, the row is at exactly this version.
            state.written_versions[portfolio_id] = portfolio._version
    state.flushed_versions = flushed


install_session_guard(PortfolioSession)


# -- the hooks, one per event ---------------------------------------------------


@event.listens_for(PortfolioSession, "after_begin")
def _after_begin(session: Session, transaction: SessionTransaction, connection: Any) -> None:
    transaction_state(session).holds_connection = True


@event.listens_for(PortfolioSession, "before_flush")
def _before_flush(
    session: Session, flush_context: UOWTransaction, instances: Iterable[Any] | None
) -> None:
    _prepare_flush(session)


def _prepare_flush(session: Session) -> None:
    """What every flush does first: bump the touched aggregates, hold their operations."""
    state = transaction_state(session)
    _bump_aggregate_versions(session, state)
    for portfolio in recording_portfolios(session):
        if portfolio.pending_operations():
            state.held_portfolios[portfolio.id] = portfolio


@event.listens_for(PortfolioSession, "before_commit")
def _before_commit(session: Session) -> None:
    # A savepoint release also fires before_commit: events belong to the outer COMMIT.
    if not session.in_nested_transaction():
        write_events(session)


@event.listens_for(PortfolioSession, "after_commit")
def _after_commit(session: Session) -> None:
    if not session.in_nested_transaction():
        transaction_state(session).committed = True


@event.listens_for(PortfolioSession, "after_soft_rollback")
def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    # A rolled-back savepoint may have undone a bump: read the versions instead.
    state = current_state(session)
    if state is not None:
        state.written_versions.clear()


@event.listens_for(PortfolioSession, "after_transaction_end")
def _end_of_transaction(session: Session, transaction: SessionTransaction) -> None:
    # Only the outermost transaction's end forgets: a SAVEPOINT released or
    # rolled back (a lock attempt) ends too, and forgetting then would bump a
    # portfolio twice or discard earlier work.
    if transaction.parent is not None:
        return
    state = current_state(session)
    committed = state is not None and state.committed
    for portfolio in recording_portfolios(session):
        operations = portfolio.pending_operations()
        # Committed: they are in the events. Rolled back: a loaded portfolio's
        # changes are gone, and so are its operations; a new one keeps both
        # (its Python state is untouched): a retry that adds it again
        # (create_portfolio) still needs its "created".
        if committed or (operations and operations[0].kind != "created"):
            portfolio._take_pending_operations()
    session.info.pop(STATE_KEY, None)
