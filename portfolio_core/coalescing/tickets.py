"""A coalesced call (:class:`CoalescedCall`) and each of its attempts (:class:`Ticket`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.store_work import StoreCall
from portfolio_core.units import Seconds

T = TypeVar("T")


@dataclass(eq=False)
class CoalescedCall(Generic[T]):
    """One caller's coalesced ``execute``, across its attempts (each one :class:`Ticket`)."""

    call: StoreCall[T]
    """The caller's StoreCall: observability, its key and the fingerprint it stored."""
    portfolio_id: UUID
    operation: Callable[[Portfolio], T]
    expected: int | None
    lock_timeout: Seconds | None
    version: int | None = None
    """The version the portfolio was at right after this operation (set once it succeeds)."""


@dataclass(eq=False)
class Ticket(Generic[T]):
    """One attempt of a coalesced call: queued, then given its result or its error."""

    request: CoalescedCall[T]
    result: Any = None
    error: BaseException | None = None
    final: bool = False
    """Its error was decided in an earlier unit of work (its own flush broke it)."""
    version: int | None = None
    promoted: bool = False
    """Set when a finishing leader hands it the lead instead of an outcome."""
    withdrawn: bool = False
    """Its caller left (a cancelled task) before the COMMIT point: the batch runs without it."""
    committing: bool = False
    """Its batch passed the COMMIT point with it: it may commit whatever its caller does."""

    def reset(self) -> None:
        """Forget what a unit of work that did not commit decided (unless final)."""
        self.committing = False
        if not self.final:
            self.result, self.error, self.version = None, None, None

    def outcome(self) -> T:
        """The result, or raise the error, the leader handed over."""
        if self.error is not None:
            raise self.error
        result: T = self.result
        return result
