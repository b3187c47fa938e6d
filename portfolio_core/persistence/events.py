"""The audit trail: one ``portfolio_events`` row per committed unit of work per portfolio.

:func:`write_events` runs inside the transaction, after the last flush and
before COMMIT (``UnitOfWork.commit`` calls it; a ``before_commit`` hook on
``PortfolioSession`` calls it for sessions committed any other way, e.g. an
``AsyncSession`` whose ``sync_session_class`` is ``PortfolioSession``). It
takes a plain sync ``Session``.

Conventions:

* a portfolio's creation is the event at version 1 (first operation
  ``created``); every later committed unit of work that bumps the version
  writes the event at the *new* version, so ``len(history) == version`` and
  the (portfolio_id, version) primary key is a second optimistic guard: two
  writers of the same version can not both commit;
* the operations come from the portfolios' pending lists (the domain records
  every command) and from the repository's SQL paths
  (:func:`record_sql_operation`), in the order they were applied;
* a version bump with no recorded operation (an attribute set by hand) still
  writes an event, with an empty operation list, so versions and events
  always match; replay can not reproduce such a change;
* the event carries the unit of work's idempotency key, if any, and the
  transaction's ``now()`` as ``occurred_at``.

The table refuses UPDATE, DELETE and TRUNCATE (a trigger); nothing here
offers either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Engine, event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from portfolio_core.domain.events import PortfolioEvent, PortfolioOperation
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import StaleDataException
from portfolio_core.persistence.mapping import (
    START_VERSIONS_KEY,
    WRITTEN_VERSIONS_KEY,
    PortfolioSession,
)
from portfolio_core.persistence.schema import portfolio_events, portfolios

SQL_OPERATIONS_KEY: Final = "portfolio_core.sql_operations"
"""session.info key: operations applied by SQL to portfolios not loaded in the session."""
IDEMPOTENCY_KEY_KEY: Final = "portfolio_core.idempotency_key"
"""session.info key: the idempotency key the current transaction's events carry."""
EVENTS_WRITTEN_KEY: Final = "portfolio_core.events_written"
"""session.info key: True once this transaction's events have been written."""
HELD_KEY: Final = "portfolio_core.recording_portfolios"
"""session.info key: portfolios with pending operations, held until the transaction ends.

The identity map only keeps *clean* objects weakly: a portfolio flushed
mid-transaction (a savepoint flushes) and no longer referenced by the caller
could be garbage-collected with its pending operations.
"""

EVENT_PRIMARY_KEY: Final = "pk_portfolio_events"
_INSERT_EVENTS: Final = insert(portfolio_events)  # built once: this runs on every commit


def record_sql_operation(
    session: Session, portfolio_id: UUID, operation: PortfolioOperation
) -> None:
    """Note an operation the repository applied in SQL, for this transaction's event.

    If the portfolio is loaded, the operation joins its pending list (keeping
    the order with the domain's own operations); otherwise it waits in
    ``session.info`` (any domain operation on the portfolio comes later).
    """
    loaded = session.identity_map.get(identity_key(Portfolio, (portfolio_id,)))
    if isinstance(loaded, Portfolio):
        loaded.record_external_operation(operation)
        session.info.setdefault(HELD_KEY, {})[portfolio_id] = loaded
        return
    waiting: dict[UUID, list[PortfolioOperation]] = session.info.setdefault(SQL_OPERATIONS_KEY, {})
    waiting.setdefault(portfolio_id, []).append(operation)


def pending_operations(session: Session) -> dict[UUID, list[PortfolioOperation]]:
    """Every operation this transaction applied, by portfolio, oldest first (not cleared)."""
    collected: dict[UUID, list[PortfolioOperation]] = {
        pid: list(operations)
        for pid, operations in session.info.get(SQL_OPERATIONS_KEY, {}).items()
        if operations
    }
    for portfolio in _recording_portfolios(session):
        operations = portfolio.pending_operations()
        if operations:
            collected.setdefault(portfolio.id, []).extend(operations)
    return collected


def _recording_portfolios(session: Session) -> list[Portfolio]:
    seen: dict[int, Portfolio] = {}
    held = session.info.get(HELD_KEY, {})
    for obj in (*held.values(), *session.identity_map.values(), *session.new):
        if isinstance(obj, Portfolio):
            seen.setdefault(id(obj), obj)
    return list(seen.values())


def set_idempotency_key(session: Session, key: str | None) -> None:
    """Tag this transaction's events with ``key``."""
    session.info[IDEMPOTENCY_KEY_KEY] = key


def write_events(session: Session) -> list[tuple[UUID, int]]:
    """Flush, then INSERT this transaction's events; return their (portfolio_id, version).

    Once per transaction (later calls do nothing). A primary-key clash means
    another transaction already wrote that version: StaleDataException.
    """
    if session.info.get(EVENTS_WRITTEN_KEY):
        return []
    session.flush()
    operations = pending_operations(session)
    created = {pid for pid, ops in operations.items() if ops[0].kind == "created"}
    versions: dict[UUID, list[int]] = {pid: [1] for pid in created}
    touched: dict[UUID, int] = session.info.get(START_VERSIONS_KEY, {})
    if touched:
        # Versions a flush wrote are known without a round trip; only those
        # bumped by SQL alone (or after a rollback) are read back.
        written: dict[UUID, int] = session.info.get(WRITTEN_VERSIONS_KEY, {})
        current = {pid: written[pid] for pid in touched if pid in written}
        unknown = [pid for pid in touched if pid not in written]
        if unknown:
            current.update(
                session.execute(
                    select(portfolios.c.id, portfolios.c.version).where(
                        portfolios.c.id.in_(unknown)
                    )
                ).all()
            )
        for pid, start in touched.items():
            now = current.get(pid)
            if now is not None and now > start:
                versions.setdefault(pid, []).append(now)
    key = session.info.get(IDEMPOTENCY_KEY_KEY)
    rows: list[dict[str, Any]] = []
    for pid in sorted(versions):
        for index, version in enumerate(sorted(set(versions[pid]))):
            # Created and changed again after a flush in one transaction: the
            # operations all go to the first event (the state they lead to is
            # the committed one either way).
            ops = operations.get(pid, []) if index == 0 else []
            rows.append(
                {
                    "portfolio_id": pid,
                    "version": version,
                    "operations": [op.to_json() for op in ops],
                    "idempotency_key": key,
                }
            )
    if rows:
        try:
            session.execute(_INSERT_EVENTS, rows)
        except IntegrityError as error:
            if EVENT_PRIMARY_KEY not in str(error.orig):
                raise
            first = rows[0]
            raise StaleDataException(
                "Portfolio",
                first["portfolio_id"],
                first["version"] - 1,
                _committed_version(session, first["portfolio_id"]),
            ) from error
    session.info[EVENTS_WRITTEN_KEY] = True
    return [(row["portfolio_id"], row["version"]) for row in rows]


def _committed_version(session: Session, portfolio_id: UUID) -> int | None:
    """The portfolio's committed version, read on a connection of its own.

    The session's transaction is aborted by the failed INSERT, so the re-read
    cannot run in it.
    """
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with engine.connect() as connection:
        version = connection.execute(
            select(portfolios.c.version).where(portfolios.c.id == portfolio_id)
        ).scalar_one_or_none()
    return None if version is None else int(version)


def load_history(
    session: Session,
    portfolio_id: UUID,
    since_version: int | None = None,
    until_version: int | None = None,
) -> list[PortfolioEvent]:
    """The portfolio's events with ``since_version < version <= until_version``, in order."""
    statement = (
        select(portfolio_events)
        .where(portfolio_events.c.portfolio_id == portfolio_id)
        .order_by(portfolio_events.c.version)
    )
    if since_version is not None:
        statement = statement.where(portfolio_events.c.version > since_version)
    if until_version is not None:
        statement = statement.where(portfolio_events.c.version <= until_version)
    return [event_from_row(row) for row in session.execute(statement).mappings()]


def event_from_row(row: Any) -> PortfolioEvent:
    """A PortfolioEvent from a ``portfolio_events`` row (a mapping)."""
    return PortfolioEvent(
        portfolio_id=row["portfolio_id"],
        version=row["version"],
        occurred_at=row["occurred_at"],
        operations=tuple(PortfolioOperation.from_json(item) for item in row["operations"]),
        idempotency_key=row["idempotency_key"],
    )


def events_with_key(session: Session, key: str) -> Sequence[tuple[UUID, int]]:
    """(portfolio_id, version) of the events written under idempotency ``key``."""
    statement = (
        select(portfolio_events.c.portfolio_id, portfolio_events.c.version)
        .where(portfolio_events.c.idempotency_key == key)
        .order_by(portfolio_events.c.portfolio_id, portfolio_events.c.version)
    )
    return [(row[0], row[1]) for row in session.execute(statement).all()]


# -- session hooks ----------------------------------------------------------------


@event.listens_for(PortfolioSession, "before_flush")
def _hold_recording_portfolios(session: Session, *args: Any) -> None:
    held: dict[UUID, Portfolio] = session.info.setdefault(HELD_KEY, {})
    for portfolio in _recording_portfolios(session):
        if portfolio.pending_operations():
            held[portfolio.id] = portfolio


@event.listens_for(PortfolioSession, "before_commit")
def _write_events_before_commit(session: Session) -> None:
    # A savepoint release also fires before_commit: events belong to the outer COMMIT.
    if not session.in_nested_transaction():
        write_events(session)


@event.listens_for(PortfolioSession, "after_commit")
def _forget_committed_operations(session: Session) -> None:
    if session.in_nested_transaction():
        return
    for portfolio in _recording_portfolios(session):
        portfolio.take_pending_operations()
    _forget_transaction_state(session)


@event.listens_for(PortfolioSession, "after_rollback")
def _forget_rolled_back_state(session: Session) -> None:
    if session.in_nested_transaction():
        return
    # A loaded portfolio's changes are gone with the transaction, and so are
    # its operations. A new one keeps both (its Python state is untouched): a
    # retry that adds it again (create_portfolio) still needs its "created".
    for portfolio in _recording_portfolios(session):
        operations = portfolio.pending_operations()
        if operations and operations[0].kind != "created":
            portfolio.take_pending_operations()
    _forget_transaction_state(session)


def _forget_transaction_state(session: Session) -> None:
    for key in (SQL_OPERATIONS_KEY, IDEMPOTENCY_KEY_KEY, EVENTS_WRITTEN_KEY, HELD_KEY):
        session.info.pop(key, None)
