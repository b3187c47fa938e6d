"""The audit trail: one ``portfolio_events`` row per committed unit of work per portfolio.

:func:`insert_events` builds and INSERTs the rows of one transaction, after
its last flush and before COMMIT; ``persistence.session.write_events`` calls
it (from ``PortfolioSession.commit`` and the ``before_commit`` hook) with what
the transaction did. This module also reads the trail back
(:func:`load_history`, :func:`events_with_key`). It takes a plain sync
``Session`` and keeps no state.

Conventions:

* a portfolio's creation is the event at version 1 (first operation
  ``created``); every later committed unit of work that bumps the version
  writes the event at the *new* version, so ``len(history) == version`` and
  the (portfolio_id, version) primary key is a second optimistic guard: two
  writers of the same version can not both commit;
* the operations come from the portfolios' pending lists (the domain records
  every command) and from the repository's SQL paths
  (``persistence.session.record_sql_operation``), in the order they were applied;
* a version bump with no recorded operation (an attribute set by hand) is
  refused before the flush (``UnrecordedChangeError``, see
  ``persistence.session``), so replay always equals the stored state;
* the event carries the unit of work's idempotency key, if any, and the
  transaction's ``now()`` as ``occurred_at``.

The table refuses UPDATE, DELETE and TRUNCATE (a trigger), and an INSERT
at any version but the one this transaction gave the portfolio (another
trigger); nothing here offers either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portfolio_core.domain.events import PortfolioEvent, PortfolioOperation
from portfolio_core.errors import StaleDataException
from portfolio_core.persistence.schema import portfolio_events, portfolios

EVENT_PRIMARY_KEY: Final = "pk_portfolio_events"
_INSERT_EVENTS: Final = insert(portfolio_events)  # built once: this runs on every commit


def insert_events(
    session: Session,
    operations: Mapping[UUID, Sequence[PortfolioOperation]],
    *,
    start_versions: Mapping[UUID, int],
    written_versions: Mapping[UUID, int],
    idempotency_key: str | None,
) -> list[tuple[UUID, int]]:
    """INSERT one transaction's events; return their (portfolio_id, version).

    ``operations`` by portfolio, in order; ``start_versions`` each touched
    portfolio's version when the transaction first touched it;
    ``written_versions`` the versions its flushes wrote (the others are read).
    A primary-key clash means another transaction already wrote that
    version: StaleDataException.
    """
    created = {pid for pid, ops in operations.items() if ops and ops[0].kind == "created"}
    versions: dict[UUID, list[int]] = {pid: [1] for pid in created}
    for pid, now in _versions_now(session, start_versions, written_versions).items():
        if now > start_versions[pid]:
            versions.setdefault(pid, []).append(now)
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
                    "idempotency_key": idempotency_key,
                }
            )
    if rows:
        _insert_rows(session, rows)
    return [(row["portfolio_id"], row["version"]) for row in rows]


def row_events(
    portfolio_ids: Sequence[UUID],
    operations: Mapping[UUID, Sequence[PortfolioOperation]],
    *,
    start_versions: Mapping[UUID, int],
    written_versions: Mapping[UUID, int],
    idempotency_key: str | None,
) -> dict[UUID, dict[str, Any]] | None:
    """Each event's operations and key, by portfolio, if each can be written with its row.

    For ``row_flush``'s statement that writes a row and its event together (at
    the version the row's UPDATE returns): only when each of ``portfolio_ids``
    (the rows being written) is one version past its start in this transaction
    (bumped by this flush or an earlier one), recorded operations (all of the
    transaction's, oldest first) and was not created in it, and no other
    portfolio has an operation (one changed only by an earlier flush, a new
    one's "created"). Otherwise None: :func:`insert_events` writes them.
    """
    if operations.keys() != set(portfolio_ids):
        return None
    rows: dict[UUID, dict[str, Any]] = {}
    for pid in portfolio_ids:
        ops = operations[pid]
        start, written = start_versions.get(pid), written_versions.get(pid)
        if start is None or written != start + 1 or ops[0].kind == "created":
            return None
        rows[pid] = {
            "operations": [op.to_json() for op in ops],
            "idempotency_key": idempotency_key,
        }
    return rows


def _versions_now(
    session: Session, touched: Mapping[UUID, int], written: Mapping[UUID, int]
) -> dict[UUID, int]:
    """The current version of each touched portfolio that still exists."""
    # Versions a flush wrote are known without a round trip; only those
    # bumped by SQL alone (or after a rollback) are read back.
    current = {pid: written[pid] for pid in touched if pid in written}
    unknown = [pid for pid in touched if pid not in written]
    if unknown:
        statement = select(portfolios.c.id, portfolios.c.version).where(
            portfolios.c.id.in_(unknown)
        )
        current.update((row[0], row[1]) for row in session.execute(statement).all())
    return current


def _insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    try:
        # Core, on the session's connection: the ORM's execute path adds nothing to an INSERT.
        session.connection().execute(_INSERT_EVENTS, rows)
    except IntegrityError as error:
        first = rows[0]
        raise version_taken(session, error, first["portfolio_id"], first["version"]) from error


def version_taken(
    session: Session, error: IntegrityError, portfolio_id: UUID, version: int
) -> StaleDataException:
    """The conflict an event's primary-key clash at ``version`` means (``error`` re-raised
    if it is another integrity error): another transaction already wrote that version."""
    if EVENT_PRIMARY_KEY not in str(error.orig):
        raise error
    return StaleDataException(
        "Portfolio", portfolio_id, version - 1, _committed_version(session, portfolio_id)
    )


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


def events_with_key(
    session: Session, key: str, portfolio_id: UUID | None = None
) -> Sequence[tuple[UUID, int]]:
    """(portfolio_id, version) of the events written under idempotency ``key``.

    With ``portfolio_id`` only that portfolio's (the statement then routes to
    one distribution key on Citus: docs/scaling.md).
    """
    statement = (
        select(portfolio_events.c.portfolio_id, portfolio_events.c.version)
        .where(portfolio_events.c.idempotency_key == key)
        .order_by(portfolio_events.c.portfolio_id, portfolio_events.c.version)
    )
    if portfolio_id is not None:
        statement = statement.where(portfolio_events.c.portfolio_id == portfolio_id)
    return [(row[0], row[1]) for row in session.execute(statement).all()]
