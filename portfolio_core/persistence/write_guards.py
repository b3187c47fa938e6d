"""Write-path guards: no portfolio row is written without its recorded operation and event.

* :func:`refuse_unrecorded`, called by PortfolioSession's ``before_flush``
  hook: a portfolio (or one of its positions) changed with no domain
  operation recorded since its last flush (an attribute set by hand) would
  bump the version with nothing to replay, so the stored state and the
  audit trail would part ways. UnrecordedChangeError, before any SQL.
* :func:`install_session_guard`: mapper hooks refusing a Portfolio or
  Position row written by any Session that is not a PortfolioSession (a
  plain ``sqlalchemy.orm.Session(engine)`` would commit it without the
  version bump and the event).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, MutableMapping, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import event
from sqlalchemy.orm import Session, object_session

from portfolio_core.domain.events import PortfolioOperation
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.domain.position import Position
from portfolio_core.errors import UnrecordedChangeError


def refuse_unrecorded(
    recorded_at_flush: MutableMapping[UUID, int],
    sql_operations: Mapping[UUID, Sequence[PortfolioOperation]],
    roots: Mapping[UUID, Portfolio],
    deleted: Collection[object],
) -> None:
    """UnrecordedChangeError if a changed portfolio recorded nothing new since its last flush.

    ``recorded_at_flush`` (the transaction's, updated here) holds how many
    operations each portfolio had when a flush last changed it;
    ``sql_operations`` those applied in SQL to portfolios not loaded.
    """
    for portfolio_id, portfolio in roots.items():
        if portfolio in deleted:
            continue
        recorded = len(portfolio.pending_operations()) + len(sql_operations.get(portfolio_id, ()))
        if recorded <= recorded_at_flush.get(portfolio_id, 0):
            raise UnrecordedChangeError(
                portfolio_id,
                "changed without a recorded domain operation (an attribute or position set "
                "by hand?); change portfolios through their methods",
            )
        recorded_at_flush[portfolio_id] = recorded


def install_session_guard(session_class: type[Session]) -> None:
    """Refuse Portfolio/Position rows flushed by a Session that is not a ``session_class``."""

    def refuse_foreign_session(mapper: Any, connection: Any, target: object) -> None:
        if isinstance(object_session(target), session_class):
            return
        portfolio_id = (
            target.id if isinstance(target, Portfolio) else getattr(target, "portfolio_id", None)
        )
        raise UnrecordedChangeError(
            portfolio_id,
            "written by a plain Session: use PortfolioStore, UnitOfWork or "
            f"{session_class.__name__}, which version the change and record its event",
        )

    for mapped in (Portfolio, Position):
        for event_name in ("before_insert", "before_update", "before_delete"):
            event.listen(mapped, event_name, refuse_foreign_session)
