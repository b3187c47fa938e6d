"""Positions one symbol at a time: a command on a portfolio does not load all its positions.

:class:`SessionPositions` is the ``PositionSource`` the mapped Portfolio uses
(``domain.position_book``): while a loaded portfolio's list of open positions
has not been read, opening, closing or re-pricing one symbol fetches just that
row through the partial unique index ``(portfolio_id, symbol) WHERE closed_at
IS NULL``, and a new position is added to the session on its own. The
session's identity map keeps one object per row, so the list, if it is read
later, holds the very same objects.

A portfolio whose state is expired (rollback, refresh) forgets what it
fetched: its book is dropped and rebuilt from the database on the next use.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import InstanceState, object_session

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position
from portfolio_core.persistence.errors import translated
from portfolio_core.persistence.schema import positions


class SessionPositions:
    """Fetch and attach a loaded portfolio's positions through its session."""

    def __init__(self) -> None:
        # Built once the classes are mapped, with bind parameters (see repository).
        self._open_by_symbol: Final = select(Position).where(
            positions.c.portfolio_id == bindparam("pid"),
            positions.c.symbol == bindparam("symbol"),
            positions.c.closed_at.is_(None),
        )

    def loaded(self, portfolio: Portfolio) -> bool:
        """True when the list is in memory, or when there is no session to ask."""
        # The ORM keeps a loaded attribute's value in the instance __dict__.
        return "_positions" in portfolio.__dict__ or object_session(portfolio) is None

    def find_open(self, portfolio: Portfolio, symbol: str) -> Position | None:
        """``SELECT`` the open position of ``symbol`` (one index probe)."""
        session = object_session(portfolio)
        if session is None:  # pragma: no cover - loaded() said the list is the truth
            return None
        with translated(entity_type="Portfolio", entity_id=portfolio.id):
            return session.execute(
                self._open_by_symbol, {"pid": portfolio.id, "symbol": symbol}
            ).scalar_one_or_none()

    def attach(self, portfolio: Portfolio, position: Position) -> None:
        """Add the new position to the portfolio's session (INSERTed at flush)."""
        session = object_session(portfolio)
        if session is None:  # pragma: no cover - loaded() said the list is the truth
            portfolio._positions.append(position)
            return
        session.add(position)


def _forget_book(state: InstanceState[Portfolio], *_: Any) -> None:
    # raw=True: the object may be gone already (the identity map holds it weakly).
    state.dict.pop("_position_book", None)


def _forget_book_on_full_expire(state: InstanceState[Portfolio], attrs: Any) -> None:
    # A full expire (rollback, expire_all) may have dropped pending positions.
    if attrs is None:
        _forget_book(state)


def install_position_source() -> None:
    """Make mapped portfolios fetch positions by symbol; their books reset on expire/refresh."""
    Portfolio._source = SessionPositions()
    event.listen(Portfolio, "expire", _forget_book_on_full_expire, raw=True)
    event.listen(Portfolio, "refresh", _forget_book, raw=True)
