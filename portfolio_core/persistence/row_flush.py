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

At COMMIT (``PortfolioSession.commit``) the transaction's audit event can go
with its row: ``event_rows(session, ids)`` answers each portfolio's event
(its operations and key) when every event of the transaction is one of those,
and the UPDATE becomes ``WITH bumped AS (UPDATE ... RETURNING id, version)
INSERT INTO portfolio_events ... SELECT ... FROM bumped``: one round trip
instead of two, the same rows. The event trigger's query sees the row the
CTE just wrote (it runs after the UPDATE, on a fresh command), so it admits
the event exactly as before; a stale version updates no row and inserts no
event (row count 0: StaleDataError, as above). A coalesced batch
(``coalescing.grouped``) gives one row several events, at the versions it
names (ascending, the last one the row's new version): they are unnested from
three arrays (:data:`EVENT_ROWS`) and inserted by the same statement, the row
count being the number of events.

Anything else (a new or deleted object, a changed position or collection, an
expired value, a caller's Connection, a listener of the flush or of
Portfolio's UPDATE other than the library's own) is left to the ORM's flush:
the function answers False and does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any, Final
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    Column,
    Engine,
    Insert,
    Integer,
    Text,
    bindparam,
    cast,
    column,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstanceState, Session
from sqlalchemy.orm.exc import StaleDataError

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import PortfolioCoreError, shown_value
from portfolio_core.persistence.events import version_taken
from portfolio_core.persistence.schema import portfolio_events, portfolios

EventRows = Callable[[Session, list[UUID]], Mapping[UUID, Mapping[str, Any]] | None]
"""``(session, portfolio ids) -> {id: {"operations": [...], "idempotency_key": ...}}`` when
the transaction's events are exactly one per given portfolio, else None. A row's
several events instead: ``{id: {"_event_versions": [...], "_event_operations": [JSON
text, ...], "_event_keys": [...]}}`` (the parameters of :data:`EVENT_ROWS`)."""

EVENT_ROWS: Final = (
    func.unnest(
        cast(bindparam("_event_versions", type_=ARRAY(Integer)), ARRAY(Integer)),
        cast(bindparam("_event_operations", type_=ARRAY(Text)), ARRAY(Text)),
        cast(bindparam("_event_keys", type_=ARRAY(Text)), ARRAY(Text)),
    )
    .table_valued(column("version", Integer), column("operations", Text), column("key", Text))
    .render_derived()
)
"""Several events of one portfolio as rows, in order: three arrays unnested (fixed text,
compiled once whatever their length), each event's operations list sent as JSON text."""
EVENT_COLUMNS: Final = ["portfolio_id", "version", "operations", "idempotency_key"]

_UPDATE: Final = update(portfolios).where(
    portfolios.c.id == bindparam("_row_id"), portfolios.c.version == bindparam("_row_version")
)
"""The versioned UPDATE; its SET clause is the changed columns passed as parameters."""

_columns: dict[str, Column[Any]] = {}


@lru_cache(maxsize=64)
def update_with_event(changed: tuple[str, ...], several: bool = False) -> Insert:
    """The versioned UPDATE of the ``changed`` columns and its event INSERT, as one statement.

    ``several``: the events are :data:`EVENT_ROWS` (a coalesced batch's), at
    their own versions. Built once per set of changed columns (a handful in
    practice: deposits, withdrawals...), so SQLAlchemy's compiled cache serves
    every later call.
    """
    bumped = (
        update(portfolios)
        .where(
            portfolios.c.id == bindparam("_row_id"),
            portfolios.c.version == bindparam("_row_version"),
        )
        .values({name: bindparam(name, type_=portfolios.c[name].type) for name in changed})
        .returning(portfolios.c.id, portfolios.c.version)
        .cte("bumped")
    )
    if several:
        events = select(
            bumped.c.id,
            EVENT_ROWS.c.version,
            cast(EVENT_ROWS.c.operations, JSONB),
            EVENT_ROWS.c.key,
        ).select_from(bumped.join(EVENT_ROWS, true()))
        # Ascending, whatever the plan: the audit trigger admits each event
        # only as the continuation of the newest one.
        events = events.order_by(EVENT_ROWS.c.version)
        return insert(portfolio_events).from_select(EVENT_COLUMNS, events)
    event = select(
        bumped.c.id,
        bumped.c.version,
        bindparam("_event_operations", type_=portfolio_events.c.operations.type).label(
            "operations"
        ),
        bindparam("_event_key", type_=portfolio_events.c.idempotency_key.type).label(
            "idempotency_key"
        ),
    )
    return insert(portfolio_events).from_select(EVENT_COLUMNS, event)


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


def flush_portfolio_rows(
    session: Session,
    before_flush: Callable[[Session], None],
    event_rows: EventRows | None = None,
) -> bool:
    """Flush ``session`` if it only holds changed portfolio columns; False to leave it to the ORM.

    ``before_flush(session)`` is the library's before_flush hook, run first
    as every flush runs it. With ``event_rows`` (at COMMIT), each portfolio's
    event it answers is written by the row's own statement (see above).
    """
    states = _changed_rows(session)
    if states is None or not _only_library_listeners(session):
        return False
    before_flush(session)
    if _changed_rows(session) is None:  # the hook found more to write: the ORM's job
        return False
    changes = list(_changes(sorted(states, key=lambda s: s.dict["id"])))
    # Asked about the rows written below only: every event answered gets its statement.
    ids = [state.dict["id"] for state, _ in changes]
    events = None if event_rows is None else event_rows(session, ids)
    connection = session.connection()
    for state, changed in changes:
        values = state.dict
        parameters = {
            **changed,
            "_row_id": values["id"],
            "_row_version": state.committed_state.get("_version", values["_version"]),
        }
        event = None if events is None else events.get(values["id"])
        expected, first_version = 1, values["_version"]
        if event is None:
            result = connection.execute(_UPDATE, parameters)
        else:
            several = "_event_versions" in event
            if several:
                versions = list(event["_event_versions"])
                if versions != list(range(parameters["_row_version"] + 1, values["_version"] + 1)):
                    # Every version the row moves through has its event: no gap, no extra.
                    raise PortfolioCoreError(
                        f"events at versions {shown_value(versions)} do not take portfolio "
                        f"{values['id']} from version {parameters['_row_version']} "
                        f"to {values['_version']}"
                    )
                parameters.update(event)
                expected = len(versions)  # one row per event, or none
                first_version = versions[0]
            else:
                parameters["_event_operations"] = event["operations"]
                parameters["_event_key"] = event["idempotency_key"]
            statement = update_with_event(tuple(sorted(changed)), several)
            try:
                result = connection.execute(statement, parameters)
            except IntegrityError as error:  # the event's version is taken: a conflict
                raise version_taken(session, error, values["id"], first_version) from error
        if result.rowcount != expected:  # no row at the loaded version: no event either
            raise StaleDataError(
                f"UPDATE statement on table 'portfolios' expected to update 1 row(s); "
                f"0 were matched ({result.rowcount} of {expected} statement rows)."
            )
    InstanceState._commit_all_states(
        [(state, state.dict) for state in states], session.identity_map
    )
    return True


def _changes(
    states: Iterable[InstanceState[Any]],
) -> Iterable[tuple[InstanceState[Any], dict[str, Any]]]:
    """Each state with its changed columns (by column name), skipping unchanged ones."""
    columns = _portfolio_columns()
    for state in states:
        values = state.dict
        changed = {
            columns[key].key: values[key]
            for key, before in state.committed_state.items()
            if key in values and values[key] != before
        }
        if changed:
            yield state, changed
