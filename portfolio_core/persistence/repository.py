"""PostgreSQLPortfolioRepository: loads and stores Portfolio aggregates in one session.

The repository lives inside a unit of work and never commits: the unit of
work does.  Reads go through the ORM (identity map, version checks); the few
operations that must not cost one statement per row (re-pricing thousands of
positions, atomic field updates) are single SQL statements that keep the
identity map in step afterwards.

Those SQL paths record their operations for the audit trail
(``persistence.events.record_sql_operation``) just as the domain records its
commands; :meth:`history` and :meth:`replay` read the trail back.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, Protocol, TypeVar
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from portfolio_core.domain import events as domain_events
from portfolio_core.domain import money
from portfolio_core.domain.events import PortfolioEvent, PortfolioOperation
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position, PositionRequest
from portfolio_core.errors import (
    PessimisticLockException,
    PortfolioNotFoundError,
    StaleDataException,
    ValidationError,
)
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.events import load_history, record_sql_operation
from portfolio_core.persistence.locking import guarded_lock_attempt, local_lock_timeout
from portfolio_core.persistence.mapping import START_VERSIONS_KEY, PortfolioSession, needs_bump
from portfolio_core.persistence.schema import portfolios

T = TypeVar("T")

ATOMIC_FIELDS: Final = frozenset({"name", "cash_balance"})
"""Fields update_portfolio_atomic may set; never version, never derived totals."""


class UnitOfWorkRunner(Protocol):
    """Runs a function in a fresh unit of work under a retry policy (see UnitOfWork)."""

    def __call__(
        self, work: Callable[[PostgreSQLPortfolioRepository], T], entity_id: UUID
    ) -> T: ...


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


_SELECT_VERSION_FOR_UPDATE: Final = text(
    "SELECT version FROM portfolios WHERE id = :pid FOR UPDATE"
)
_BUMP_VERSION: Final = text(
    "UPDATE portfolios SET version = version + 1, last_updated = now() "
    "WHERE id = :pid RETURNING version, last_updated"
)
_REPRICE: Final = text(
    "WITH v(symbol, price) AS ("
    " SELECT * FROM unnest(CAST(:symbols AS varchar[]), CAST(:prices AS numeric[]))) "
    "UPDATE positions AS p SET current_price = v.price, version = p.version + 1 "
    "FROM v WHERE p.portfolio_id = :pid AND p.closed_at IS NULL AND p.symbol = v.symbol "
    "RETURNING p.id, p.version, p.symbol"
)


class PostgreSQLPortfolioRepository:
    """Portfolio aggregates in PostgreSQL, within one unit of work's session."""

    def __init__(
        self, session: PortfolioSession, run_in_new_unit_of_work: UnitOfWorkRunner | None = None
    ) -> None:
        self.session = session
        self._run_in_new_unit_of_work = run_in_new_unit_of_work

    # -- basic access ----------------------------------------------------------

    def add(self, portfolio: Portfolio) -> None:
        """Stage a new portfolio; it is INSERTed when the unit of work commits."""
        self.session.add(portfolio)

    def get(self, portfolio_id: UUID) -> Portfolio:
        """The portfolio with this id (from the identity map if already loaded)."""
        pid = as_portfolio_id(portfolio_id)
        with translated(entity_type="Portfolio", entity_id=pid):
            portfolio = self.session.get(Portfolio, pid)
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
                merged.record_external_operation(operation)
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

        A new, unattached Portfolio; see ``portfolio_core.domain.events.replay``.
        PortfolioNotFoundError if the portfolio has no events.
        """
        pid = as_portfolio_id(portfolio_id)
        with translated(entity_type="Portfolio", entity_id=pid):
            events = load_history(self.session, pid, until_version=version)
        return domain_events.replay(pid, events, version)

    # -- pessimistic locking ---------------------------------------------------

    def get_portfolio_for_update(
        self,
        portfolio_id: UUID,
        nowait: bool = True,
        skip_locked: bool = False,
        lock_timeout: float | None = None,  # float-ok: seconds
    ) -> Portfolio:
        """Load and row-lock a portfolio (``SELECT ... FOR UPDATE [NOWAIT|SKIP LOCKED]``).

        ``lock_timeout`` (seconds) bounds the wait with ``SET LOCAL lock_timeout``
        for this statement only. A lock not obtained raises
        PessimisticLockException and leaves the unit of work usable: the
        attempt runs in a savepoint when the transaction already holds work.
        """
        pid = as_portfolio_id(portfolio_id)
        locked = self._lock_rows(
            [pid], nowait=nowait, skip_locked=skip_locked, lock_timeout=lock_timeout
        )
        if not locked:
            raise PessimisticLockException(
                f"Portfolio {pid} is locked by another transaction (SKIP LOCKED)",
                entity_type="Portfolio",
                entity_id=pid,
            )
        return locked[0]

    def get_portfolios_for_update(
        self,
        portfolio_ids: Iterable[UUID],
        nowait: bool = False,
        skip_locked: bool = False,
        lock_timeout: float | None = None,  # float-ok: seconds
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
        lock_timeout: float | None,  # float-ok: seconds
    ) -> builtins.list[Portfolio]:
        if nowait and skip_locked:
            raise ValidationError("skip_locked", skip_locked, "cannot be combined with nowait")
        statement = (
            select(Portfolio)
            .where(portfolios.c.id.in_(ids) if len(ids) != 1 else portfolios.c.id == ids[0])
            .order_by(portfolios.c.id)
            .with_for_update(nowait=nowait, skip_locked=skip_locked, of=portfolios)
            .execution_options(populate_existing=True)
        )
        entity_id: object = ids[0] if len(ids) == 1 else tuple(ids)
        session = self.session
        with (
            guarded_lock_attempt(session),
            translated(entity_type="Portfolio", entity_id=entity_id, lock_timeout=lock_timeout),
            local_lock_timeout(session, lock_timeout),
        ):
            return builtins.list(session.scalars(statement).all())

    # -- single-statement updates ----------------------------------------------

    def update_portfolio_atomic(
        self, portfolio_id: UUID, fields: Mapping[str, Any], expected_version: int
    ) -> int:
        """UPDATE ``fields`` if the row is at ``expected_version``; return the new version.

        Only ``name`` and ``cash_balance`` may be set (never ``version``). A new
        cash balance is booked as a deposit or withdrawal of the difference, so
        the money invariant keeps holding. StaleDataException (with the version
        re-read) if the row has moved on.
        """
        pid = as_portfolio_id(portfolio_id)
        unknown = set(fields) - ATOMIC_FIELDS
        if unknown or not fields:
            raise ValidationError(
                "fields",
                sorted(unknown) or {},
                f"must be a non-empty subset of {sorted(ATOMIC_FIELDS)}",
            )
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise ValidationError("expected_version", expected_version, "must be an int")
        # One bump per unit of work: none if this transaction already bumped it.
        # The start version is only noted once the UPDATE matched: a stale
        # expected_version must not become this transaction's start version.
        start_versions: dict[UUID, int] = self.session.info.setdefault(START_VERSIONS_KEY, {})
        bump = start_versions.get(pid, expected_version) == expected_version
        assignments = [f"version = version + {int(bump)}", "last_updated = now()"]
        params: dict[str, Any] = {"pid": pid, "expected": expected_version}
        if "name" in fields:
            params["name"] = money.validate_name(fields["name"])
            assignments.append("name = :name")
        if "cash_balance" in fields:
            params["cash"] = money.non_negative(fields["cash_balance"], "cash_balance")
            assignments += [
                "cash_balance = :cash",
                "total_deposits = total_deposits + GREATEST(:cash - cash_balance, 0)",
                "total_withdrawals = total_withdrawals + GREATEST(cash_balance - :cash, 0)",
            ]
        statement = text(
            f"UPDATE portfolios SET {', '.join(assignments)} "
            "WHERE id = :pid AND version = :expected "
            "RETURNING version, name, cash_balance, total_deposits, total_withdrawals, last_updated"
        )
        with translated(entity_type="Portfolio", entity_id=pid):
            row = self.session.execute(statement, params).one_or_none()
            if row is None:
                actual = self.session.execute(
                    text("SELECT version FROM portfolios WHERE id = :pid"), {"pid": pid}
                ).scalar_one_or_none()
                if actual is None:
                    raise PortfolioNotFoundError(pid)
                raise StaleDataException("Portfolio", pid, expected_version, actual)
        start_versions.setdefault(pid, expected_version)
        operations = [
            PortfolioOperation(name, {name.removeprefix("set_"): value})
            for name, value in (
                ("set_name", params.get("name")),
                ("set_cash_balance", params.get("cash")),
            )
            if value is not None
        ]
        for operation in operations:
            record_sql_operation(self.session, pid, operation)
        loaded = self._loaded_portfolio(pid)
        if loaded is not None and loaded._version == expected_version:
            for attribute in (
                "name",
                "cash_balance",
                "total_deposits",
                "total_withdrawals",
                "last_updated",
            ):
                set_committed_value(loaded, attribute, getattr(row, attribute))
            set_committed_value(loaded, "_version", row.version)
        return int(row.version)

    def update_all_prices(self, portfolio_id: UUID, prices: Mapping[str, money.AmountLike]) -> int:
        """Re-price the open positions found in ``prices`` with a constant number of statements.

        Locks the portfolio row, updates every matching position in one
        ``UPDATE ... FROM unnest(...)``, and bumps the portfolio's version once
        (not at all if nothing matched). Positions already loaded in this
        session get the new price and version. Returns how many were re-priced.
        """
        pid = as_portfolio_id(portfolio_id)
        symbols: builtins.list[str] = []
        values: builtins.list[Decimal] = []
        for symbol, price in prices.items():
            symbols.append(money.validate_symbol(symbol))
            values.append(money.non_negative(price, f"prices[{symbol!r}]"))
        if not symbols:
            return 0
        session = self.session
        with translated(entity_type="Portfolio", entity_id=pid):
            version = session.execute(_SELECT_VERSION_FOR_UPDATE, {"pid": pid}).scalar_one_or_none()
            if version is None:
                raise PortfolioNotFoundError(pid)
            changed = session.execute(
                _REPRICE, {"pid": pid, "symbols": symbols, "prices": values}
            ).all()
            if not changed:
                return 0
            bumped = None
            if needs_bump(session, pid, version):
                bumped = session.execute(_BUMP_VERSION, {"pid": pid}).one()
        applied = dict(zip(symbols, values, strict=True))
        record_sql_operation(
            session,
            pid,
            PortfolioOperation(
                "update_all_prices",
                {"prices": {row.symbol: applied[row.symbol] for row in changed}},
            ),
        )
        self._sync_repriced(pid, applied, changed, version, bumped)
        return len(changed)

    def _sync_repriced(
        self,
        pid: UUID,
        prices: Mapping[str, Decimal],
        changed: Sequence[Any],
        version_before: int,
        bumped: Any,
    ) -> None:
        identity_map = self.session.identity_map
        for position_id, new_version, _symbol in changed:
            position = identity_map.get(identity_key(Position, (pid, position_id)))
            if isinstance(position, Position):
                set_committed_value(position, "current_price", prices[position.symbol])
                set_committed_value(position, "_version", new_version)
        loaded = self._loaded_portfolio(pid)
        if bumped is not None and loaded is not None and loaded._version == version_before:
            set_committed_value(loaded, "_version", bumped.version)
            set_committed_value(loaded, "last_updated", bumped.last_updated)

    def _loaded_portfolio(self, pid: UUID) -> Portfolio | None:
        found = self.session.identity_map.get(identity_key(Portfolio, (pid,)))
        return found if isinstance(found, Portfolio) else None

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
        Returns the position as committed (detached).
        """
        if self._run_in_new_unit_of_work is None:
            raise ValidationError(
                "repository", self, "has no unit-of-work runner (create it through UnitOfWork)"
            )
        pid = as_portfolio_id(portfolio_id)

        def work(repository: PostgreSQLPortfolioRepository) -> Position:
            return repository.get(pid).open_position(request)

        return self._run_in_new_unit_of_work(work, pid)
