"""What a failed version check found: the versions of the rows a flush wrote, re-read.

``PortfolioSession.flush`` calls :func:`stale_conflict` when a flush's
version-checked UPDATE matched no row, so that StaleDataException carries the
version the row is at now, not a guess.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import text
from sqlalchemy.orm import Session

from portfolio_core.errors import StaleDataException
from portfolio_core.persistence.schema_option import in_schema

# Each pinned to the portfolio (the Citus distribution key: docs/scaling.md).
_VERSION_QUERIES: Final = {
    "Portfolio": text("SELECT version FROM portfolios WHERE id = :pid"),
    "Position": text("SELECT version FROM positions WHERE portfolio_id = :pid AND id = :id"),
}


def stale_conflict(
    session: Session, flushed: list[tuple[str, object, int, object]]
) -> StaleDataException:
    """Re-read the versions of the rows just flushed; name the first that moved on.

    Runs in a fresh transaction of ``session`` (the failed one was rolled back)
    and rolls that back too, leaving the session clean.
    """
    try:
        for entity_type, entity_id, expected, portfolio_id in flushed:
            actual = session.execute(
                in_schema(_VERSION_QUERIES[entity_type], session),
                {"id": entity_id, "pid": portfolio_id},
            ).scalar_one_or_none()
            if actual != expected:
                return StaleDataException(entity_type, entity_id, expected, actual)
    finally:
        session.rollback()
    if not flushed:
        return StaleDataException("Portfolio", None, None, None)
    entity_type, entity_id, expected, _ = flushed[0]
    return StaleDataException(entity_type, entity_id, expected, expected)
