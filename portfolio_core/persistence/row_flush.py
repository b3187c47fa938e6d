"""The common flush, made lean: changed portfolio columns written by one versioned UPDATE each.

Most units of work change a few columns of one portfolio (a deposit, a
withdrawal) and nothing else. SQLAlchemy's unit of work would sort mappers,
run the positions relationship's dependency processor and build its UPDATE
anew for it, which costs more Python than everything else in the call. When
the session holds nothing else to write, :func:`flush_portfolio_rows` does the
same work directly, with the same guarantees:

* the ``before_flush`` hook runs first, as in any flush (the aggregate
  version bump, the unrecorded-change guard, the held operations);
* each changed portfolio gets ``UPDATE portfolios SET <changed columns>
  WHERE id = :id AND version = <version loaded>``, in primary-key order; a row
  count other than 1 raises StaleDataError, as ``version_id_col`` does, which
  ``PortfolioSession.flush`` turns into StaleDataException;
* the objects are then marked committed exactly as SQLAlchemy does after a flush.

Anything else (a new or deleted object, a changed position or collection, an
expired value, a caller's Connection, a listener of the flush or of
Portfolio's UPDATE other than the library's own) is left to the ORM's flush:
the function answers False and does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import Column, Engine, bindparam, update
from sqlalchemy.orm import InstanceState, Session
from sqlalchemy.orm.exc import StaleDataError

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.persistence.schema import portfolios

_UPDATE: Final = update(portfolios).where(
    portfolios.c.id == bindparam("_row_id"), portfolios.c.version == bindparam("_row_version")
)
"""The versioned UPDATE; its SET clause is the changed columns passed as parameters."""

_columns: dict[str, Column[Any]] = {}


def _portfolio_columns() -> dict[str, Column[Any]]:
    """Portfolio's mapped column attributes by key (``_cash_balance`` -> cash_balance)."""
    if not _columns:
        for prop in Portfolio.__mapper__.column_attrs:  # type: ignore[attr-defined]
            _columns[prop.key] = prop.columns[0]
    return _columns


def _only_library_listeners(session: Session) -> bool:
    """Whether the flush and Portfolio's UPDATE have no listener but the library's own."""
    mapper_events = Portfolio.__mapper__.dispatch  # type: ignore[attr-defined]
    events = session.dispatch
    return (
        len(events.before_flush) == 1
        and not events.after_flush
        and not events.after_flush_postexec
        and len(mapper_events.before_update) == 1
        and not mapper_events.after_update
    )


def _changed_rows(session: Session) -> list[InstanceState[Any]] | None:
    """The modified portfolio states if they are all there is to flush, else None."""
    if session._new or session._deleted or not isinstance(session.bind, Engine):
        return None
    modified: set[InstanceState[Any]] = session.identity_map._modified
    if not modified:
        return None
    columns = _portfolio_columns()
    for state in modified:
        if (
            state.class_ is not Portfolio
            or state.key is None
            or state.expired_attributes
            or "_version" not in state.dict
            or "id" in state.committed_state  # a changed key: the ORM knows the old one
            or not columns.keys() >= state.committed_state.keys()
        ):
            return None
    return list(modified)


def flush_portfolio_rows(session: Session, before_flush: Callable[[Session], None]) -> bool:
    """Flush ``session`` if it only holds changed portfolio columns; False to leave it to the ORM.

    ``before_flush(session)`` is the library's before_flush hook, run first
    as every flush runs it.
    """
    states = _changed_rows(session)
    if states is None or not _only_library_listeners(session):
        return False
    before_flush(session)
    if _changed_rows(session) is None:  # the hook found more to write: the ORM's job
        return False
    columns = _portfolio_columns()
    connection = session.connection()
    for state in sorted(states, key=lambda s: s.dict["id"]):
        values, committed = state.dict, state.committed_state
        changed = {
            columns[key].key: values[key]
            for key, before in committed.items()
            if key in values and values[key] != before
        }
        if not changed:
            continue
        loaded_version = committed.get("_version", values["_version"])
        result = connection.execute(
            _UPDATE, {**changed, "_row_id": values["id"], "_row_version": loaded_version}
        )
        if result.rowcount != 1:
            raise StaleDataError(
                f"UPDATE statement on table 'portfolios' expected to update 1 row(s); "
                f"{result.rowcount} were matched."
            )
    InstanceState._commit_all_states(
        [(state, state.dict) for state in states], session.identity_map
    )
    return True
