"""PostgreSQLPortfolioRepository: loads and stores Portfolio aggregates in one session.

The repository lives inside a unit of work and never commits nor runs one:
the unit of work does.  It loads through the ORM (identity map, version
checks; a portfolio loaded for a change is built from a Core row as the ORM
would build it, ``persistence.row_load``) and takes row locks; the few
operations that must not cost one statement per row (re-pricing thousands of
positions, atomic field updates) are single SQL statements in
``persistence.sql_updates``, which record their operations for the audit
trail just as the domain records its commands.
:meth:`history` and :meth:`replay` read the trail back.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar
from uuid import UUID

from sqlalchemy import Select, bindparam, select, text
from sqlalchemy.orm import selectinload

from portfolio_core.domain import money
from portfolio_core.domain.events import PortfolioEvent
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position, PositionRequest
from portfolio_core.domain.replay import replay as replay_events
from portfolio_core.errors import (
    PessimisticLockException,
    PortfolioNotFoundError,
    StaleDataException,
    ValidationError,
)
from portfolio_core.persistence import row_load, sql_updates
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.events import load_history
from portfolio_core.persistence.locking import (
    guarded_lock_attempt,
    local_lock_timeout,
    lock_for_change,
)
from portfolio_core.persistence.schema import portfolios
from portfolio_core.persistence.schema_option import in_schema
from portfolio_core.persistence.session import PortfolioSession
from portfolio_core.persistence.sql_updates import ATOMIC_FIELDS
from portfolio_core.units import Seconds

__all__ = [
    "ATOMIC_FIELDS",
    "OpenPositionTransactional",
    "PostgreSQLPortfolioRepository",
    "as_portfolio_id",
]

T = TypeVar("T")

OpenPositionTransactional = Callable[[UUID, PositionRequest], Position]
"""Opens a position in a unit of work of its own (UnitOfWork provides one)."""


def as_portfolio_id(value: object) -> UUID:
    """A UUID from a UUID or its string form; ValidationError otherwise."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise ValidationError("portfolio_id", value, "is not a UUID")


_EXISTS: Final = text("SELECT EXISTS (SELECT FROM portfolios WHERE id = :pid)")

# Statements built once (with bind parameters) rather than per call: building
# a select() and computing its cache key costs more Python than the rest of
# a one-row load (see portfolio_core.bench).
_GET_PORTFOLIO: Final = select(Portfolio).where(portfolios.c.id == bindparam("pid"))
_LOCK_STATEMENTS: Final[dict[tuple[bool, bool, bool], Select[Portfolio]]] = {}


def _lock_statement(single: bool, nowait: bool, skip_locked: bool) -> Select[Portfolio]:
    """``SELECT ... FOR UPDATE [NOWAIT|SKIP LOCKED] OF portfolios`` for one id or a list."""
    key = (single, nowait, skip_locked)
    statement = _LOCK_STATEMENTS.get(key)
    if statement is None:
        where = (
            portfolios.c.id == bindparam("pid")
            if single
            else portfolios.c.id.in_(bindparam("ids", expanding=True))
        )
        statement = _LOCK_STATEMENTS[key] = (
            select(Portfolio)
            .where(where)
            .order_by(portfolios.c.id)
            .with_for_update(nowait=nowait, skip_locked=skip_locked, of=portfolios)
            .execution_options(populate_existing=True)
        )
    return statement


class PostgreSQLPortfolioRepository:
    """Portfolio aggregates in PostgreSQL, within one unit of work's session."""

    def __init__(
        self,
        session: PortfolioSession,
        open_position_transactional: OpenPositionTransactional | None = None,
    ) -> None:
        self.session = session
        self._open_position_transactional = open_position_transactional

    # -- basic access ----------------------------------------------------------

    def add(self, portfolio: Portfolio) -> None:
        """Stage a new portfolio; it is INSERTed when the unit of work commits."""
        self.session.add(portfolio)

    def get(self, portfolio_id: UUID) -> Portfolio:
        """The portfolio with this id (from the identity map if already loaded)."""
        pid = as_portfolio_id(portfolio_id)
        session = self.session
        with translated(entity_type="Portfolio", entity_id=pid):
            if sql_updates.loaded_portfolio(session, pid) is not None:
                portfolio = session.get(Portfolio, pid)
            else:
                # The SELECT session.get would send, as a Core row (persistence.row_load):
                # session.get rebuilds and re-keys its statement on every call.
                portfolio = row_load.load_for_change(
                    session, locking=False, orm_statement=_GET_PORTFOLIO, params={"pid": pid}
                )
        if portfolio is None:
            raise PortfolioNotFoundError(pid)
        return portfolio

    def get_snapshot(self, portfolio_id: UUID) -> Portfolio:
        """The portfolio with its open and closed positions loaded, ready to detach."""
        pid = as_portfolio_id(portfolio_id)
        statement = (
            select(Portfolio)
            .where(portfolios.c.id == pid)
            .options(selectinload(Portfolio._positions), selectinload(Portfolio._closed))  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        )
        with translated(entity_type="Portfolio", entity_id=pid):
            portfolio = self.session.scalars(statement).one_or_none()
        if portfolio is None:
            raise PortfolioNotFoundError(pid)
        return portfolio

    def list(self) -> Sequence[Portfolio]:
        """Every portfolio, oldest first."""
        statement = select(Portfolio).order_by(portfolios.c.created_at, portfolios.c.id)
        with translated(entity_type="Portfolio"):
            return self.session.scalars(statement).all()

    def update_portfolio(self, portfolio: Portfolio) -> Portfolio:
        """Persist a detached copy (e.g. a PortfolioStore.get snapshot changed offline).

        StaleDataException if the stored portfolio has moved past the copy's
        version; otherwise the copy's state is merged in and the version is
        bumped once when the unit of work commits. Returns the attached object.
        """
        current = self.get(portfolio.id)
        if current._version != portfolio._version:
            raise StaleDataException(
                "Portfolio", portfolio.id, portfolio._version, current._version
            )
        merged = self.session.merge(portfolio)
        if merged is not portfolio:
            # The copy's recorded commands are not mapped: carry them over.
            for operation in portfolio.pending_operations():
                merged._record_external_operation(operation)
        return merged

    # -- audit trail -------------------------------------------------------------

    def history(
        self, portfolio_id: UUID, since_version: int | None = None
    ) -> builtins.list[PortfolioEvent]:
        """The portfolio's committed events after ``since_version`` (all if None), oldest first."""
        pid = as_portfolio_id(portfolio_id)
        with translated(entity_type="Portfolio", entity_id=pid):
            return load_history(self.session, pid, since_version)

    def replay(self, portfolio_id: UUID, version: int | None = None) -> Portfolio:
        """The portfolio as it stood at ``version`` (default: latest), rebuilt from events alone.

        A new, unattached Portfolio; see ``portfolio_core.domain.replay``.
        PortfolioNotFoundError if the portfolio has no events.
        """
        pid = as_portfolio_id(portfolio_id)
        with translated(entity_type="Portfolio", entity_id=pid):
            events = load_history(self.session, pid, until_version=version)
        return replay_events(pid, events, version)

    # -- pessimistic locking ---------------------------------------------------

    def get_portfolio_for_update(
        self,
        portfolio_id: UUID,
        nowait: bool = True,
        skip_locked: bool = False,
        lock_timeout: Seconds | None = None,
    ) -> Portfolio:
        """Load and row-lock a portfolio (``SELECT ... FOR UPDATE [NOWAIT|SKIP LOCKED]``).

        ``lock_timeout`` (seconds) bounds the wait with ``SET LOCAL lock_timeout``
        for this statement only. ``skip_locked=True`` takes precedence over the
        ``nowait`` default: a row another transaction holds is skipped. A lock
        not obtained (NOWAIT, lock_timeout, skipped) raises
        PessimisticLockException and leaves the unit of work usable: the
        attempt runs in a savepoint when the transaction already holds work.
        """
        pid = as_portfolio_id(portfolio_id)
        locked = self._lock_rows(
            [pid],
            nowait=nowait and not skip_locked,
            skip_locked=skip_locked,
            lock_timeout=lock_timeout,
        )
        if not locked:
            if not skip_locked or not self._exists(pid):
                raise PortfolioNotFoundError(pid)
            raise PessimisticLockException(
                f"Portfolio {pid} is locked by another transaction (SKIP LOCKED)",
                entity_type="Portfolio",
                entity_id=pid,
            )
        return locked[0]

    def lock_for_change(self, portfolio_id: UUID, lock_timeout: Seconds) -> Portfolio:
        """Load and row-lock a portfolio for the rest of a unit of work that ends at COMMIT.

        ``FOR UPDATE``, waiting at most ``lock_timeout`` seconds, in one round
        trip: the statement sets ``lock_timeout`` itself (``set_config(...,
        true)``) and leaves it set until the transaction ends, where
        :meth:`get_portfolio_for_update` restores it with two more. For the
        stores' own units of work (they COMMIT next); PessimisticLockException
        as :meth:`get_portfolio_for_update`.
        """
        return lock_for_change(self.session, as_portfolio_id(portfolio_id), lock_timeout)

    def _exists(self, pid: UUID) -> bool:
        with translated(entity_type="Portfolio", entity_id=pid):
            return bool(
                self.session.execute(in_schema(_EXISTS, self.session), {"pid": pid}).scalar_one()
            )

    def get_portfolios_for_update(
        self,
        portfolio_ids: Iterable[UUID],
        nowait: bool = False,
        skip_locked: bool = False,
        lock_timeout: Seconds | None = None,
    ) -> builtins.list[Portfolio]:
        """Row-lock several portfolios in primary-key order (the order that cannot deadlock).

        With ``skip_locked`` the ones another transaction holds are left out;
        otherwise PortfolioNotFoundError names the first id that does not exist.
        """
        ids = sorted({as_portfolio_id(pid) for pid in portfolio_ids})
        locked = self._lock_rows(
            ids, nowait=nowait, skip_locked=skip_locked, lock_timeout=lock_timeout
        )
        if not skip_locked and len(locked) != len(ids):
            found = {p.id for p in locked}
            raise PortfolioNotFoundError(next(pid for pid in ids if pid not in found))
        return locked

    def _lock_rows(
        self,
        ids: Sequence[UUID],
        *,
        nowait: bool,
        skip_locked: bool,
        lock_timeout: Seconds | None,
    ) -> builtins.list[Portfolio]:
        if nowait and skip_locked:
            raise ValidationError("skip_locked", skip_locked, "cannot be combined with nowait")
        single = len(ids) == 1
        statement = _lock_statement(single, nowait, skip_locked)
        params = {"pid": ids[0]} if single else {"ids": builtins.list(ids)}
        entity_id: object = ids[0] if single else tuple(ids)
        session = self.session
        with (
            guarded_lock_attempt(session),
            translated(entity_type="Portfolio", entity_id=entity_id, lock_timeout=lock_timeout),
            local_lock_timeout(session, lock_timeout),
        ):
            return builtins.list(session.scalars(statement, params).all())

    # -- single-statement updates ----------------------------------------------

    def update_portfolio_atomic(
        self, portfolio_id: UUID, fields: Mapping[str, Any], expected_version: int
    ) -> int:
        """UPDATE ``fields`` if the row is at ``expected_version``; return the new version.

        Only ``name`` and ``cash_balance`` may be set (never ``version``); see
        ``persistence.sql_updates.update_portfolio_atomic``. StaleDataException
        (with the version re-read) if the row has moved on; a copy loaded in
        this session is updated in place.
        """
        pid = as_portfolio_id(portfolio_id)
        return sql_updates.update_portfolio_atomic(self.session, pid, fields, expected_version)

    def update_all_prices(self, portfolio_id: UUID, prices: Mapping[str, money.AmountLike]) -> int:
        """Re-price the open positions found in ``prices`` with a constant number of statements.

        One ``UPDATE ... FROM unnest(...)`` and one version bump (none if
        nothing matched); see ``persistence.sql_updates.update_all_prices``.
        Returns how many positions were re-priced.
        """
        pid = as_portfolio_id(portfolio_id)
        return sql_updates.update_all_prices(self.session, pid, prices)

    # -- several portfolios at once ----------------------------------------------

    def batch_update_portfolios(
        self, updates: Mapping[UUID, Callable[[Portfolio], T]]
    ) -> dict[UUID, T]:
        """Apply one operation per portfolio in this unit of work: all or nothing.

        The rows are locked in primary-key order first, so two batches over
        overlapping portfolios queue up instead of deadlocking. Each portfolio
        touched gets exactly one version bump at commit. Returns each
        operation's result by portfolio id.
        """
        locked = self.get_portfolios_for_update(updates.keys(), nowait=False)
        by_id = {p.id: p for p in locked}
        return {
            pid: updates[pid](by_id[as_portfolio_id(pid)])
            for pid in sorted(updates, key=as_portfolio_id)
        }

    def open_position_transactional(self, portfolio_id: UUID, request: PositionRequest) -> Position:
        """Open a position in its own transaction, retried as a whole on conflicts.

        Independent of this unit of work: it commits (or fails) on its own.
        Returns the position as committed (detached). A repository never runs
        a unit of work: this forwards to the one the UnitOfWork that made the
        repository provides (``unit_of_work.open_position_transactional``).
        """
        if self._open_position_transactional is None:
            raise ValidationError(
                "repository", self, "has no unit-of-work runner (create it through UnitOfWork)"
            )
        return self._open_position_transactional(as_portfolio_id(portfolio_id), request)
