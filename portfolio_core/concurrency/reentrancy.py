"""Re-entrant units of work: a store call nested in another on the same portfolio, refused.

An operation passed to ``execute`` that calls the store again on the same
portfolio starts a second transaction that waits for the row lock (or the
version) the first one holds until it commits, which it only does once the
nested call returns: it would wait forever, and a retry after its backend is
killed would wait again. The portfolios of the store calls running in this
thread or asyncio task are kept in a ContextVar (threads and tasks each see
their own), and a nested call on one of them raises ReentrantUnitOfWorkError
at once. A task created inside a unit of work inherits its portfolios (it
would wait on them just the same).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import Final

from portfolio_core.errors import ReentrantUnitOfWorkError

_RUNNING: Final[ContextVar[frozenset[object]]] = ContextVar(
    "portfolio_core_running_units_of_work", default=frozenset()
)


def entity_ids(entity_id: object) -> frozenset[object]:
    """The portfolio ids a store call concerns (its ``entity_id``: one id or a tuple)."""
    if isinstance(entity_id, tuple):
        return frozenset(entity_id)
    return frozenset() if entity_id is None else frozenset({entity_id})


class _Running:
    """The context manager :func:`unit_of_work_on` returns (a class: every commit passes here)."""

    __slots__ = ("_ids", "_token")

    def __init__(self, ids: frozenset[object]) -> None:
        self._ids = ids
        self._token: Token[frozenset[object]] | None = None

    def __enter__(self) -> None:
        running = _RUNNING.get()
        for busy in sorted(self._ids & running, key=str):
            raise ReentrantUnitOfWorkError(busy)
        self._token = _RUNNING.set(running | self._ids)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _RUNNING.reset(self._token)


def unit_of_work_on(entity_id: object) -> AbstractContextManager[None]:
    """Mark the portfolios of ``entity_id`` busy for the block; refuse those already busy."""
    return _Running(entity_ids(entity_id))
