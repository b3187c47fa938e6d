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

from collections.abc import Iterable
from typing import Any, Final
from uuid import UUID

from sqlalchemy import and_, event
from sqlalchemy.orm import Session, UOWTransaction, foreign, registry, relationship
from sqlalchemy.orm.util import identity_key

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position, utcnow
from portfolio_core.persistence.schema import metadata, portfolios, positions

mapper_registry: Final = registry(metadata=metadata)

START_VERSIONS_KEY: Final = "portfolio_core.start_versions"
"""session.info key: each touched portfolio's version when this transaction first touched it."""
FLUSHED_VERSIONS_KEY: Final = "portfolio_core.flushed_versions"
"""session.info key: (entity_type, id, expected_version) of each versioned row flushed."""
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


class PortfolioSession(Session):
    """The Session used by units of work: aggregate versioning hooks attached."""


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
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Portfolio):
            if obj in session.new:
                continue
            if obj in session.deleted or session.is_modified(obj):
                roots[obj.id] = obj
        elif isinstance(obj, Position):
            if obj not in session.new:
                if not session.is_modified(obj) and obj not in session.deleted:
                    continue
                flushed.append(("Position", obj.id, obj._version))
            owner = _owning_portfolio(session, obj)
            if owner is not None and owner not in session.new:
                roots[owner.id] = owner
    for portfolio_id, portfolio in roots.items():
        flushed.append(("Portfolio", portfolio_id, portfolio._version))
        if needs_bump(session, portfolio_id, portfolio._version):
            portfolio._version = portfolio._version + 1
            portfolio.last_updated = utcnow()
    session.info[FLUSHED_VERSIONS_KEY] = flushed


@event.listens_for(PortfolioSession, "after_begin")
def _note_db_work(session: Session, transaction: Any, connection: Any) -> None:
    session.info[DB_WORK_KEY] = True


def _end_of_transaction(session: Session, *args: Any) -> None:
    # A savepoint's release or rollback fires these events too, but the
    # transaction (and its one bump per portfolio) goes on.
    if session.in_nested_transaction():
        return
    for key in (START_VERSIONS_KEY, FLUSHED_VERSIONS_KEY, DB_WORK_KEY):
        session.info.pop(key, None)


event.listen(PortfolioSession, "after_commit", _end_of_transaction)
event.listen(PortfolioSession, "after_rollback", _end_of_transaction)


start_mappers()
