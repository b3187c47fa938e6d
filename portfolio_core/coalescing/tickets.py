"""A coalesced call (:class:`CoalescedCall`), each of its attempts (:class:`Ticket`), the queue.

The queue of one portfolio (:class:`Lane`) and the errors of a caller whose
wait ran out are shared by the thread and the task coalescers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from sqlalchemy import Engine

from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.errors import CommitOutcomeUnknownException, PessimisticLockException
from portfolio_core.store_call import StoreCall
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


S = TypeVar("S")
"""What wakes one queued caller: a ``threads.Signal`` (a one-shot lock), or a Future of its loop."""

Take = Callable[[Ticket[Any]], bool]
"""Whether a queued ticket may join the batch (``Batch.fits``)."""


class Lane(Generic[S]):
    """One portfolio's queue, shared by both coalescers: callers waiting, and their signals.

    The lane exists while a leader is at work; each queued caller has one
    signal, which its owner sets when the caller's batch settled it or when
    it is handed the lead.
    The thread coalescer calls these under its lock; the task one on its
    loop's thread.
    """

    __slots__ = ("queue", "signals")

    def __init__(self) -> None:
        self.queue: deque[Ticket[Any]] = deque()
        self.signals: dict[int, S] = {}

    def enqueue(self, ticket: Ticket[Any], signal: S) -> None:
        """Queue ``ticket`` (arrival order) with the signal that will wake it."""
        self.queue.append(ticket)
        self.signals[id(ticket)] = signal

    def leave(self, ticket: Ticket[Any]) -> bool:
        """Take ``ticket`` out of the queue if it is still there (True), its signal dropped."""
        if ticket not in self.queue:
            return False
        self.queue.remove(ticket)
        del self.signals[id(ticket)]
        return True

    def take(self, room: int, fits: Take) -> list[Ticket[Any]]:
        """Up to ``room`` queued tickets that ``fits``, in order; the others stay queued."""
        taken: list[Ticket[Any]] = []
        if room <= 0:
            return taken
        for ticket in list(self.queue):
            if fits(ticket):
                self.queue.remove(ticket)
                taken.append(ticket)
                if len(taken) >= room:
                    break
        return taken

    def release(self, taken: list[Ticket[Any]]) -> tuple[list[S], bool]:
        """The signals to wake for ``taken`` and for the successor; whether the lane closes.

        The first caller still queued is handed the lead (``promoted``); with
        none queued, the lane closes (its owner drops it). The successor's
        signal comes first: the next batch starts while the others wake.
        """
        successor = self.pass_lead()
        settled = self.settled(taken)
        return (settled if successor is None else [successor, *settled]), successor is None

    def pass_lead(self) -> S | None:
        """The signal of the first caller queued, now handed the lead; None: the lane closes."""
        if not self.queue:
            return None
        successor = self.queue.popleft()
        successor.promoted = True
        return self.signals.pop(id(successor))

    def settled(self, taken: list[Ticket[Any]]) -> list[S]:
        """The signals to wake for ``taken`` (each once: they leave the lane)."""
        signals = self.signals
        return [signals.pop(id(t)) for t in taken if id(t) in signals]


def queue_timeout(ticket: Ticket[Any], waited: Seconds | None) -> PessimisticLockException:
    """The error of a caller that was not taken into a batch within ``waited`` seconds."""
    return PessimisticLockException(
        f"waited {waited} s in the coalescing queue of portfolio {ticket.request.portfolio_id}",
        entity_type="Portfolio",
        entity_id=ticket.request.portfolio_id,
        timeout=waited,
    )


def outcome_overdue(ticket: Ticket[Any], waited: Seconds | None) -> CommitOutcomeUnknownException:
    """The error of a caller taken into a batch that gave no outcome within ``waited`` more s."""
    return CommitOutcomeUnknownException(
        f"taken into a coalesced batch of portfolio {ticket.request.portfolio_id}, "
        f"no outcome within {waited} s: it may still commit",
        entity_type="Portfolio",
        entity_id=ticket.request.portfolio_id,
    )


def overlaps_commit(engine: Engine, isolation: str | None) -> bool:
    """Whether a store's next batch may start while the last COMMIT is in flight.

    Only at READ COMMITTED (the store's level, else the engine's, else the
    server's default, known after the first connection): the next batch's
    FOR UPDATE then waits for the COMMIT and reads the row it committed. At
    REPEATABLE READ or SERIALIZABLE its snapshot would predate that COMMIT,
    and the lock would end in a serialization failure.
    """
    level = isolation
    if level is None:
        level = engine.get_execution_options().get("isolation_level")
    if level is None:  # create_engine(isolation_level=...) is applied before SQLAlchemy reads it
        level = engine.dialect.default_isolation_level
    return isinstance(level, str) and level.upper() == "READ COMMITTED"
