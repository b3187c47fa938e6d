"""Imperative mapping of the domain classes, and aggregate-root versioning.

Both tables carry SQLAlchemy's native ``version_id_col``: every UPDATE says
``WHERE version = <loaded version>`` and a row count of 0 raises
StaleDataError, which the unit of work turns into StaleDataException.

SQLAlchemy versions each row on its own.  The Portfolio is the aggregate root,
so a change to any of its positions must also make concurrent writers of the
portfolio fail.  The portfolio's counter is therefore set by
:func:`_bump_aggregate_versions` (``version_id_generator=False``) before each
flush: once per transaction, whichever of the aggregate's rows changed, however
many flushes the transaction makes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final
from uuid import UUID

from sqlalchemy import and_, event, text
from sqlalchemy.orm import (
    Session,
    SessionTransaction,
    UOWTransaction,
    foreign,
    registry,
    relationship,
)
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.util import identity_key

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position, utcnow
from portfolio_core.errors import StaleDataException
from portfolio_core.persistence.schema import metadata, portfolios, positions

mapper_registry: Final = registry(metadata=metadata)

START_VERSIONS_KEY: Final = "portfolio_core.start_versions"
"""session.info key: each touched portfolio's version when this transaction first touched it."""
FLUSHED_VERSIONS_KEY: Final = "portfolio_core.flushed_versions"
"""session.info key: (entity_type, id, expected_version) of each versioned row flushed."""
WRITTEN_VERSIONS_KEY: Final = "portfolio_core.written_versions"
"""session.info key: {portfolio id: version} a flush of this transaction wrote (version-checked).

Once a transaction has bumped a portfolio its version cannot move again until
COMMIT (the UPDATE holds the row lock; later bumps are skipped by needs_bump),
so these are the versions the events are written at, with no SELECT. Any
rollback (a savepoint too) forgets them: the database is then read instead.
"""
DB_WORK_KEY: Final = "portfolio_core.db_work"
"""session.info key: True once the current transaction holds a database connection."""


def start_mappers() -> None:
    """Map Portfolio and Position onto their tables (idempotent)."""
    if getattr(Portfolio, "__mapper__", None) is not None:
        return
    mapper_registry.map_imperatively(
        Position,
        positions,
        properties={"_version": positions.c.version},
        version_id_col=positions.c.version,
    )
    mapper_registry.map_imperatively(
        Portfolio,
        portfolios,
        properties={
            "_version": portfolios.c.version,
            # Open positions only: closed ones stay in the collection for the
            # rest of the session (the domain filters them) and are never
            # removed from it, so SQLAlchemy never tries to orphan a row.
            "_positions": relationship(
                Position,
                primaryjoin=and_(
                    portfolios.c.id == foreign(positions.c.portfolio_id),
                    positions.c.closed_at.is_(None),
                ),
                cascade="save-update, merge",
                order_by=(positions.c.opened_at, positions.c.id),
                lazy="select",
            ),
            "_closed": relationship(
                Position,
                primaryjoin=and_(
                    portfolios.c.id == foreign(positions.c.portfolio_id),
                    positions.c.closed_at.is_not(None),
                ),
                viewonly=True,
                order_by=(positions.c.closed_at, positions.c.id),
                lazy="select",
            ),
        },
        version_id_col=portfolios.c.version,
        version_id_generator=False,
    )


_VERSION_QUERIES: Final = {
    "Portfolio": text("SELECT version FROM portfolios WHERE id = :id"),
    "Position": text("SELECT version FROM positions WHERE id = :id"),
}


class PortfolioSession(Session):
    """The Session used by units of work: aggregate versioning hooks attached.

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
        # Imported here: events.py builds on this module.
        from portfolio_core.persistence.errors import translated
        from portfolio_core.persistence.events import write_events

        with translated():
            self.flush()
            write_events(self)
        with translated(during_commit=True):
            super().commit()

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        """Flush; a version conflict rolls back and raises StaleDataException."""
        try:
            super().flush(objects)
        except StaleDataError as error:
            flushed: list[tuple[str, object, int]] = self.info.pop(FLUSHED_VERSIONS_KEY, [])
            self.rollback()
            raise _stale_conflict(self, flushed) from error


def _stale_conflict(session: Session, flushed: list[tuple[str, object, int]]) -> StaleDataException:
    """Re-read the versions of the rows just flushed; name the first that moved on.

    Runs in a fresh transaction of ``session`` (the failed one was rolled back)
    and rolls that back too, leaving the session clean.
    """
    try:
        for entity_type, entity_id, expected in flushed:
            actual = session.execute(
                _VERSION_QUERIES[entity_type], {"id": entity_id}
            ).scalar_one_or_none()
            if actual != expected:
                return StaleDataException(entity_type, entity_id, expected, actual)
    finally:
        session.rollback()
    if not flushed:
        return StaleDataException("Portfolio", None, None, None)
    entity_type, entity_id, expected = flushed[0]
    return StaleDataException(entity_type, entity_id, expected, expected)


def needs_bump(session: Session, portfolio_id: UUID, version: int) -> bool:
    """Whether a portfolio now at ``version`` still needs this transaction's one bump.

    The first time a transaction touches a portfolio its version is recorded;
    it needs a bump while it is still at that version.  Comparing versions
    rather than remembering "bumped" stays right when a savepoint rolls a
    bump back: the reloaded row is at the start version again.
    """
    start_versions: dict[UUID, int] = session.info.setdefault(START_VERSIONS_KEY, {})
    return start_versions.setdefault(portfolio_id, version) == version


def _owning_portfolio(session: Session, position: Position) -> Portfolio | None:
    if position.portfolio_id is None:
        return None
    key = identity_key(Portfolio, (position.portfolio_id,))
    found = session.identity_map.get(key)
    if found is None:
        # A position changed without its portfolio loaded: load the root so the
        # aggregate's version still moves (and is checked).
        found = session.get(Portfolio, position.portfolio_id)
    return found if isinstance(found, Portfolio) else None


@event.listens_for(PortfolioSession, "before_flush")
def _bump_aggregate_versions(
    session: Session, flush_context: UOWTransaction, instances: Iterable[Any] | None
) -> None:
    roots: dict[UUID, Portfolio] = {}
    flushed: list[tuple[str, object, int]] = []
    # Each of these properties builds a new set: take them once.
    new, deleted = session.new, session.deleted
    for obj in (*new, *session.dirty, *deleted):
        if isinstance(obj, Portfolio):
            if obj in new:
                continue
            if obj in deleted or session.is_modified(obj):
                roots[obj.id] = obj
        elif isinstance(obj, Position):
            if obj not in new:
                if not session.is_modified(obj) and obj not in deleted:
                    continue
                flushed.append(("Position", obj.id, obj._version))
            owner = _owning_portfolio(session, obj)
            if owner is not None and owner not in new:
                roots[owner.id] = owner
    written: dict[UUID, int] = session.info.setdefault(WRITTEN_VERSIONS_KEY, {})
    start_versions: dict[UUID, int] = session.info.setdefault(START_VERSIONS_KEY, {})
    for obj in new:
        if isinstance(obj, Portfolio):
            # Its INSERT is this transaction's change: a later flush of the
            # same unit of work must not bump it again.
            start_versions.setdefault(obj.id, obj._version - 1)
            written[obj.id] = obj._version
    for portfolio_id, portfolio in roots.items():
        flushed.append(("Portfolio", portfolio_id, portfolio._version))
        bumped = needs_bump(session, portfolio_id, portfolio._version)
        if bumped:
            portfolio._version = portfolio._version + 1
            portfolio.last_updated = utcnow()
        if portfolio not in deleted and (bumped or session.is_modified(portfolio)):
            # This flush UPDATEs the row WHERE version = loaded version: if it
            # succeeds, the row is at exactly this version.
            written[portfolio_id] = portfolio._version
    session.info[FLUSHED_VERSIONS_KEY] = flushed


@event.listens_for(PortfolioSession, "after_begin")
def _note_db_work(session: Session, transaction: Any, connection: Any) -> None:
    session.info[DB_WORK_KEY] = True


@event.listens_for(PortfolioSession, "after_transaction_end")
def _end_of_transaction(session: Session, transaction: SessionTransaction) -> None:
    # Only the outermost transaction's end forgets: after_commit/after_rollback
    # also fire when a SAVEPOINT is released or rolled back (a lock attempt),
    # and forgetting then would bump a portfolio twice or discard earlier work.
    if transaction.parent is None:
        for key in (START_VERSIONS_KEY, FLUSHED_VERSIONS_KEY, WRITTEN_VERSIONS_KEY, DB_WORK_KEY):
            session.info.pop(key, None)


@event.listens_for(PortfolioSession, "after_soft_rollback")
def _forget_written_versions(session: Session, previous_transaction: SessionTransaction) -> None:
    # A rolled-back savepoint may have undone a bump: read the versions instead.
    session.info.pop(WRITTEN_VERSIONS_KEY, None)


start_mappers()
