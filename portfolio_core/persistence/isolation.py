"""Transaction isolation per store / unit of work (``isolation=``).

``None`` keeps the engine's own level (PostgreSQL's default, READ COMMITTED,
unless the engine was created with another). A level is applied to the
unit of work's session only, through an option view of the engine that
shares its pool: SQLAlchemy resets the level when the connection goes back to
the pool, so a pooled connection never keeps it. A unit of work on a
caller's connection takes no level (its transaction has one already): see
``UnitOfWorkBase``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, TypeVar, get_args

if TYPE_CHECKING:
    # Not at runtime: the sync API imports without the async extra (greenlet).
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core.errors import ConfigurationError

IsolationLevel = Literal["read committed", "repeatable read", "serializable"]
"""The levels a store or unit of work accepts (PostgreSQL's spelling, lower case)."""

ISOLATION_LEVELS: Final[tuple[str, ...]] = get_args(IsolationLevel)

EngineT = TypeVar("EngineT", "Engine", "AsyncEngine")


def checked_isolation(isolation: str | None) -> IsolationLevel | None:
    """``isolation`` if it is one of ISOLATION_LEVELS (or None); ConfigurationError otherwise."""
    if isolation is None:
        return None
    if isolation not in ISOLATION_LEVELS:
        raise ConfigurationError(
            f"isolation must be one of {', '.join(ISOLATION_LEVELS)}, not {isolation!r}"
        )
    return isolation  # type: ignore[return-value]


def read_isolation(isolation: IsolationLevel | None) -> IsolationLevel:
    """The level of a read-only call: at least REPEATABLE READ.

    A snapshot is read by several statements (the portfolio, then its
    positions); at READ COMMITTED a commit landing between them would mix two
    states (a position counted next to the cash that paid for it). One
    snapshot costs PostgreSQL nothing more, and a read-only transaction never
    fails with a serialization error at REPEATABLE READ.
    """
    return "serializable" if isolation == "serializable" else "repeatable read"


def bind_with_isolation(engine: EngineT, isolation: IsolationLevel | None) -> EngineT:
    """The engine to bind a session to: ``engine`` itself, or a view of it at ``isolation``."""
    if isolation is None:
        return engine
    return engine.execution_options(isolation_level=isolation.upper())
