"""What a PortfolioSession remembers about the transaction in progress.

One :class:`TransactionState` per transaction, created on first use and kept
in one ``session.info`` slot: the aggregate versions (start, flushed,
written), whether a connection is held, the operations applied in SQL, the
portfolios held for their operations, the idempotency key and whether the
events were written. ``persistence.session``'s hooks fill it and drop it
when the outermost transaction ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from portfolio_core.domain.events import PortfolioOperation
from portfolio_core.domain.portfolio import Portfolio

STATE_KEY: Final = "portfolio_core.transaction_state"
"""The ``session.info`` slot of the current transaction's TransactionState."""


@dataclass(eq=False)
class TransactionState:
    """What one transaction of a PortfolioSession has done so far."""

    start_versions: dict[UUID, int] = field(default_factory=dict)
    """Each touched portfolio's version when this transaction first touched it."""
    flushed_versions: list[tuple[str, object, int, object]] = field(default_factory=list)
    """(entity_type, id, expected_version) of each versioned row the last flush wrote."""
    written_versions: dict[UUID, int] = field(default_factory=dict)
    """{portfolio id: version} a version-checked flush wrote.

    Once a transaction has bumped a portfolio its version cannot move again
    until COMMIT (the UPDATE holds the row lock; later bumps are skipped by
    needs_bump), so the events are written at these versions, with no SELECT.
    """
    holds_connection: bool = False
    """True once the transaction holds a database connection."""
    sql_operations: dict[UUID, list[PortfolioOperation]] = field(default_factory=dict)
    """Operations applied in SQL to portfolios not loaded in the session."""
    held_portfolios: dict[UUID, Portfolio] = field(default_factory=dict)
    """Portfolios with pending operations, held until the transaction ends.

    The identity map keeps *clean* objects weakly: a portfolio flushed
    mid-transaction and no longer referenced by the caller could otherwise be
    garbage-collected with its pending operations.
    """
    recorded_at_flush: dict[UUID, int] = field(default_factory=dict)
    """How many operations each portfolio had recorded when a flush last changed it."""
    idempotency_key: str | None = None
    """The key this transaction's events carry."""
    events_written: bool = False
    committed: bool = False
    """Set by after_commit, read when the transaction ends."""

    def needs_bump(self, portfolio_id: UUID, version: int) -> bool:
        """Whether a portfolio now at ``version`` still needs this transaction's one bump.

        The first time the transaction touches a portfolio its version is
        recorded; it needs a bump while it is still at that version, which
        stays right when a savepoint rolls a bump back.
        """
        return self.start_versions.setdefault(portfolio_id, version) == version


def transaction_state(session: Session) -> TransactionState:
    """The current transaction's state, created on first use."""
    state = session.info.get(STATE_KEY)
    if not isinstance(state, TransactionState):
        state = session.info[STATE_KEY] = TransactionState()
    return state


def current_state(session: Session) -> TransactionState | None:
    """The current transaction's state if it has one (never creates it)."""
    state = session.info.get(STATE_KEY)
    return state if isinstance(state, TransactionState) else None


def needs_bump(session: Session, portfolio_id: UUID, version: int) -> bool:
    """:meth:`TransactionState.needs_bump` on ``session``'s transaction."""
    return transaction_state(session).needs_bump(portfolio_id, version)


def holds_connection(session: Session) -> bool:
    """Whether ``session``'s transaction holds a connection (may hold work)."""
    state = current_state(session)
    return state is not None and state.holds_connection


def set_idempotency_key(session: Session, key: str | None) -> None:
    """Tag this transaction's events with ``key``."""
    transaction_state(session).idempotency_key = key


def record_sql_operation(
    session: Session, portfolio_id: UUID, operation: PortfolioOperation
) -> None:
    """Note an operation applied in SQL, for this transaction's event.

    If the portfolio is loaded, the operation joins its pending list (keeping
    the order with the domain's own operations); otherwise it waits in the
    transaction state (any domain operation on the portfolio comes later).
    """
    state = transaction_state(session)
    loaded = session.identity_map.get(identity_key(Portfolio, (portfolio_id,)))
    if isinstance(loaded, Portfolio):
        loaded._record_external_operation(operation)
        state.held_portfolios[portfolio_id] = loaded
        return
    state.sql_operations.setdefault(portfolio_id, []).append(operation)


def pending_operations(session: Session) -> dict[UUID, list[PortfolioOperation]]:
    """Every operation this transaction applied, by portfolio, oldest first (not cleared)."""
    state = current_state(session)
    waiting = state.sql_operations if state is not None else {}
    collected = {pid: list(ops) for pid, ops in waiting.items() if ops}
    for portfolio in recording_portfolios(session):
        operations = portfolio.pending_operations()
        if operations:
            collected.setdefault(portfolio.id, []).extend(operations)
    return collected


def recording_portfolios(session: Session) -> list[Portfolio]:
    """The portfolios of the transaction that may hold pending operations (held, loaded, new)."""
    state = current_state(session)
    held = state.held_portfolios.values() if state is not None else ()
    seen: dict[int, Portfolio] = {}
    for obj in (*held, *session.identity_map.values(), *session.new):
        if isinstance(obj, Portfolio):
            seen.setdefault(id(obj), obj)
    return list(seen.values())
