"""Load one portfolio for a change from a Core row, persistent in the session as the ORM makes it.

A change loads one row, yet an ORM ``select(Portfolio)`` spends most of its
client CPU on statement handling and loading machinery (compile state,
result set-up, loader strategies, row processors), not in the driver. A
plain Core SELECT of the same columns is run instead, on the session's own
connection (same transaction, same ``schema_translate_map``, same error
translation), and the object is made as the ORM makes it: no ``__init__``,
its columns in ``__dict__``, its identity key set (as ``get``'s snapshot
does, ``persistence.snapshot_rows``), its relationships absent so they load
lazily (one position per symbol, ``persistence.position_source``), then put
in the session's identity map the way the ORM's loading does
(``sqlalchemy.orm.loading``: the state's session id, then the identity
map's insertion of a key known absent), not by ``Session.add``, whose
save-update cascade and attach bookkeeping cost more than the rest of the
object's making and that the ORM's load does not run either. Nothing is
expired: the flush's fast way (``persistence.row_flush``) still applies.

The ORM statement is run instead whenever the shortcut could differ from it:
the portfolio already in the identity map (the same object comes back, and a
locking load refreshes it: ``populate_existing``), or a listener that the ORM
load fires (``do_orm_execute``, ``load``, ``loaded_as_persistent``); like the
ORM's load, the shortcut fires no attach event. As the ORM's autoflush (off
in the units of work), pending changes are flushed first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from sqlalchemy import Select, String, bindparam, func, select
from sqlalchemy.orm import ClassManager, Session, class_mapper
from sqlalchemy.orm.attributes import instance_state

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.persistence.schema import portfolios

# The volatile filter that sets lock_timeout inside the locking statement
# (persistence.locking): evaluated by the scan before LockRows waits.
SETS_LOCK_TIMEOUT: Final = func.set_config(
    "lock_timeout", bindparam("lock_timeout", type_=String()), True
).is_not(None)


class _Statements(NamedTuple):
    """The Core SELECTs of a portfolio's columns, and the attribute each column fills."""

    plain: Select[Any]
    locking: Select[Any]
    keys: list[str]
    manager: ClassManager[Portfolio]


_STATEMENTS: list[_Statements] = []
"""Built on first use (once the classes are mapped)."""


def _statements() -> _Statements:
    if not _STATEMENTS:
        mapper = class_mapper(Portfolio)
        props = mapper.column_attrs
        plain = select(*(prop.columns[0] for prop in props)).where(
            portfolios.c.id == bindparam("pid")
        )
        locking = plain.where(SETS_LOCK_TIMEOUT).with_for_update(of=portfolios)
        keys = [prop.key for prop in props]
        _STATEMENTS.append(_Statements(plain, locking, keys, mapper.class_manager))
    return _STATEMENTS[0]


def _listened(session: Session, statements: _Statements) -> bool:
    """Whether a listener would see the shortcut differ from the ORM's load."""
    events = session.dispatch
    return bool(
        events.do_orm_execute or events.loaded_as_persistent or statements.manager.dispatch.load
    )


def _attached(session: Session, statements: _Statements, row: Sequence[Any]) -> Portfolio:
    """The persistent Portfolio of ``row`` in ``session``, as the ORM's load leaves it."""
    portfolio = statements.manager.new_instance()
    values = portfolio.__dict__
    values.update(zip(statements.keys, row, strict=True))
    state = instance_state(portfolio)
    # identity_key(Portfolio, (id,)): what the ORM's load gives the object.
    key = state.key = (Portfolio, (values["id"],), None)
    # As loading._instance attaches a new object: load_for_change checked the
    # key is absent, and the object is clean (nothing for the unit of work).
    state.session_id = session.hash_key
    session.identity_map._add_unpresent(state, key)
    return portfolio


def load_for_change(
    session: Session,
    *,
    locking: bool,
    orm_statement: Select[Any],
    params: Mapping[str, Any],
) -> Portfolio | None:
    """The portfolio ``params["pid"]``, persistent in ``session``, or None if there is none.

    ``locking``: the ``FOR UPDATE`` statement that also sets lock_timeout
    (``params["lock_timeout"]``), else a plain SELECT. ``orm_statement`` is
    the ORM statement it stands for, run instead when the two could differ.
    """
    if session.autoflush:
        session.flush()  # what the ORM statement's autoflush does (nothing when clean)
    statements = _statements()
    if (Portfolio, (params["pid"],), None) in session.identity_map or _listened(
        session, statements
    ):
        found: Portfolio | None = session.execute(orm_statement, params).scalar_one_or_none()
        return found
    row = (
        session.connection()
        .execute(statements.locking if locking else statements.plain, params)
        .one_or_none()
    )
    return None if row is None else _attached(session, statements, row)
