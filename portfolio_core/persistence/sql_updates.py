"""The repository's single-statement SQL paths, and the identity-map sync after them.

Operations that must not cost one statement per row: re-pricing thousands of
positions with two array parameters (:func:`update_all_prices`) and atomic
field updates checked against a version (:func:`update_portfolio_atomic`).
Both bump the portfolio's version once per transaction (as the flush hook
would), record their operation for the audit trail, and copy what they wrote
onto objects already loaded in the session, so the identity map stays true.
PostgreSQLPortfolioRepository's methods of the same names call these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from sqlalchemy import inspect, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from portfolio_core.domain import money
from portfolio_core.domain.events import PortfolioOperation
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position
from portfolio_core.domain.price_list import ValidatedPrices, validated_prices
from portfolio_core.errors import (
    PortfolioCoreError,
    PortfolioNotFoundError,
    StaleDataException,
    ValidationError,
)
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.mapping import PORTFOLIO_FIELDS
from portfolio_core.persistence.schema_option import in_schema
from portfolio_core.persistence.transaction_state import (
    needs_bump,
    record_sql_operation,
    transaction_state,
)

ATOMIC_FIELDS: Final = frozenset({"name", "cash_balance"})
"""Fields update_portfolio_atomic may set; never version, never derived totals."""

_SELECT_VERSION: Final = text("SELECT version FROM portfolios WHERE id = :pid")
_SELECT_VERSION_FOR_UPDATE: Final = text(
    "SELECT version FROM portfolios WHERE id = :pid FOR UPDATE"
)
_BUMP_VERSION: Final = text(
    "UPDATE portfolios SET version = version + 1, last_updated = now() "
    "WHERE id = :pid RETURNING version, last_updated"
)
# One statement whatever the number of prices: two text parameters, the
# symbols and the prices each joined by spaces (ValidatedPrices.texts), split
# by the server. Neither driver then does any work per price: psycopg2 would
# quote each element of a list, asyncpg encode each Decimal (about 4 µs each).
_REPRICE_VALUES: Final = (
    "v(symbol, price) AS (SELECT * FROM unnest("
    "CAST(string_to_array(:symbols, ' ') AS varchar[]), "
    "CAST(string_to_array(:prices, ' ') AS numeric[])))"
)
_REPRICE_UPDATE: Final = (
    "UPDATE positions AS p SET current_price = v.price, version = p.version + 1 "
    "FROM v WHERE p.portfolio_id = :pid AND p.closed_at IS NULL AND p.symbol = v.symbol"
)
# When this session holds some of the positions: their new versions come back.
_REPRICE_ROWS: Final = text(
    f"WITH {_REPRICE_VALUES} {_REPRICE_UPDATE} RETURNING p.id, p.version, p.symbol"
)
# Otherwise the UPDATE alone, counted by its row count: returning 10,000 rows
# into a CTE and aggregating them cost the server 3-4% of the call, for
# nothing in the common case where every price matched.
_REPRICE: Final = text(f"WITH {_REPRICE_VALUES} {_REPRICE_UPDATE}")
# Only when fewer matched than were given (the event records exactly the
# prices applied): which did. Run under the portfolio's row lock, right after
# the UPDATE, it finds exactly the rows the UPDATE changed: each symbol has
# at most one open position (uq_positions_open_symbol), and no other writer
# can commit a change to this portfolio's positions while the lock is held
# (every such change bumps the portfolio's version, which waits for it).
_REPRICED_SYMBOLS: Final = text(
    "SELECT symbol FROM positions WHERE portfolio_id = :pid AND closed_at IS NULL "
    "AND symbol = ANY(CAST(string_to_array(:symbols, ' ') AS varchar[]))"
)


def update_portfolio_atomic(
    session: Session, pid: UUID, fields: Mapping[str, Any], expected_version: int
) -> int:
    """UPDATE ``fields`` if the row is at ``expected_version``; return the new version.

    Only ``name`` and ``cash_balance`` may be set (never ``version``). A new
    cash balance is booked as a deposit or withdrawal of the difference, so
    the money invariant keeps holding. StaleDataException (with the version
    re-read) if the row has moved on. A copy of the portfolio loaded in this
    session is updated in place; ValidationError if it holds unflushed
    changes to the same fields (they would conflict).
    """
    unknown = set(fields) - ATOMIC_FIELDS
    if unknown or not fields:
        raise ValidationError(
            "fields",
            sorted(unknown) or {},
            f"must be a non-empty subset of {sorted(ATOMIC_FIELDS)}",
        )
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise ValidationError("expected_version", expected_version, "must be an int")
    synced = ["name"] if "name" in fields else []
    if "cash_balance" in fields:
        synced += ["cash_balance", "total_deposits", "total_withdrawals"]
    loaded = loaded_portfolio(session, pid)
    if loaded is not None:
        # Copying the row over a change not yet flushed would drop it silently.
        state = inspect(loaded)
        pending = [name for name in synced if state.attrs[_attribute(name)].history.has_changes()]
        if pending:
            raise ValidationError(
                "fields",
                pending,
                "also have unflushed changes on the loaded portfolio in this unit of work",
            )
    # One bump per unit of work: none if this transaction already bumped it.
    # The start version is only noted once the UPDATE matched: a stale
    # expected_version must not become this transaction's start version.
    start_versions = transaction_state(session).start_versions
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
        row = session.execute(in_schema(statement, session), params).one_or_none()
        if row is None:
            actual = session.execute(
                in_schema(_SELECT_VERSION, session), {"pid": pid}
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
        record_sql_operation(session, pid, operation)
    if loaded is not None and loaded._version == expected_version:
        for attribute in (*synced, "last_updated"):
            set_committed_value(loaded, _attribute(attribute), getattr(row, attribute))
        set_committed_value(loaded, "_version", row.version)
    return int(row.version)


def update_all_prices(session: Session, pid: UUID, prices: Mapping[str, money.AmountLike]) -> int:
    """Re-price the open positions found in ``prices`` with a constant number of statements.

    Locks the portfolio row, updates every matching position in one
    ``UPDATE ... FROM unnest(...)``, and bumps the portfolio's version once
    (not at all if nothing matched). Positions already loaded in this
    session get the new price and version. Returns how many were re-priced.
    """
    validated = validated_prices(prices)
    if not validated:
        return 0
    symbols, values = validated.texts()
    params = {"pid": pid, "symbols": symbols, "prices": values}
    sync = _has_loaded_positions(session, pid)
    with translated(entity_type="Portfolio", entity_id=pid):
        version = session.execute(
            in_schema(_SELECT_VERSION_FOR_UPDATE, session), {"pid": pid}
        ).scalar_one_or_none()
        if version is None:
            raise PortfolioNotFoundError(pid)
        changed: Sequence[Any] = []
        if sync:
            changed = session.execute(in_schema(_REPRICE_ROWS, session), params).all()
            count = len(changed)
        else:
            # On the session's connection (as events are written): a Core result has a rowcount.
            count = session.connection().execute(in_schema(_REPRICE, session), params).rowcount
            if count < 0:  # psycopg2 and asyncpg report it; never guess (rolled back)
                raise PortfolioCoreError("the driver did not report how many rows were re-priced")
        if not count:
            return 0
        # Each symbol matches at most one open position (uq_positions_open_symbol),
        # so a full count means every price was applied: the list is not needed.
        applied = validated
        if count < len(validated):
            applied = _only(validated, _repriced_symbols(session, params, changed))
        bumped = None
        if needs_bump(session, pid, version):
            bumped = session.execute(in_schema(_BUMP_VERSION, session), {"pid": pid}).one()
            # The row stays locked at this version until COMMIT: the event is
            # written at it without reading it back (TransactionState.written_versions).
            transaction_state(session).written_versions[pid] = bumped.version
    record_sql_operation(session, pid, PortfolioOperation("update_all_prices", {"prices": applied}))
    _sync_repriced(session, pid, validated, changed, version, bumped)
    return int(count)


def _repriced_symbols(
    session: Session, params: Mapping[str, Any], changed: Sequence[Any]
) -> Iterable[str]:
    """The symbols just re-priced: from the returned rows, else read under the row lock."""
    if changed:
        return [row.symbol for row in changed]
    wanted = {"pid": params["pid"], "symbols": params["symbols"]}
    return session.execute(in_schema(_REPRICED_SYMBOLS, session), wanted).scalars().all()


def _only(prices: ValidatedPrices, symbols: Iterable[str]) -> ValidatedPrices:
    """The prices of ``symbols`` (those re-priced), in the order of ``prices``."""
    return prices.only(set(symbols))


def _has_loaded_positions(session: Session, pid: UUID) -> bool:
    keys = session.identity_map.keys()  # IdentityMap itself is not iterable
    return any(key[0] is Position and key[1][0] == pid for key in keys)


def _sync_repriced(
    session: Session,
    pid: UUID,
    prices: Mapping[str, Decimal],
    changed: Sequence[Any],
    version_before: int,
    bumped: Any,
) -> None:
    identity_map = session.identity_map
    for position_id, new_version, _symbol in changed:
        position = identity_map.get(identity_key(Position, (pid, position_id)))
        if isinstance(position, Position):
            set_committed_value(position, "_current_price", prices[position.symbol])
            set_committed_value(position, "_version", new_version)
    loaded = loaded_portfolio(session, pid)
    if bumped is not None and loaded is not None and loaded._version == version_before:
        set_committed_value(loaded, "_version", bumped.version)
        set_committed_value(loaded, "last_updated", bumped.last_updated)


def _attribute(column: str) -> str:
    """The mapped attribute of a portfolios column (money fields are private, see mapping)."""
    return f"_{column}" if column in PORTFOLIO_FIELDS else column


def loaded_portfolio(session: Session, pid: UUID) -> Portfolio | None:
    """The portfolio ``pid`` if it is in ``session``'s identity map (no I/O)."""
    # The key identity_key(Portfolio, (pid,)) builds, without its mapper lookups.
    found = session.identity_map.get((Portfolio, (pid,), None))
    return found if isinstance(found, Portfolio) else None
