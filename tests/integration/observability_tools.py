"""Shared tools of the observability tests: a forced conflict and a recording listener."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from sqlalchemy import Engine

from portfolio_core import Portfolio
from portfolio_core.observability import (
    AttemptFinished,
    AttemptStarted,
    BaseStoreListener,
    StoreCallFinished,
    StoreCallInfo,
    StoreListener,
    add_listener,
)
from tests.integration.helpers import commit_deposit_behind_the_back


class Overtaken:
    """An operation depositing ``amount``; on its first ``conflicts`` calls another
    writer first commits a deposit to the same portfolio (a certain version conflict)."""

    def __init__(self, engine: Engine, conflicts: int, amount: str = "10") -> None:
        self.engine = engine
        self.conflicts = conflicts
        self.amount = Decimal(amount)
        self.calls = 0

    def __call__(self, portfolio: Portfolio) -> int:
        self.calls += 1
        if self.calls <= self.conflicts:
            commit_deposit_behind_the_back(self.engine, portfolio.id)
        portfolio.deposit(self.amount)
        return self.calls


Event = StoreCallInfo | AttemptStarted | AttemptFinished | StoreCallFinished


class Recorder(BaseStoreListener):
    """Keeps every event it is given, in order, as (method name, event)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []

    def call_started(self, call: StoreCallInfo) -> None:
        self.events.append(("call_started", call))

    def attempt_started(self, attempt: AttemptStarted) -> None:
        self.events.append(("attempt_started", attempt))

    def attempt_finished(self, attempt: AttemptFinished) -> None:
        self.events.append(("attempt_finished", attempt))

    def call_finished(self, call: StoreCallFinished) -> None:
        self.events.append(("call_finished", call))

    def finished(self, operation: str) -> list[StoreCallFinished]:
        """The call_finished events of ``operation``'s calls."""
        return [
            event
            for name, event in self.events
            if isinstance(event, StoreCallFinished) and event.call.operation == operation
        ]

    def attempts(self, operation: str) -> list[AttemptFinished]:
        """The attempt_finished events of ``operation``'s calls."""
        return [
            event
            for name, event in self.events
            if isinstance(event, AttemptFinished) and event.call.operation == operation
        ]


@contextmanager
def subscribed(listener: StoreListener) -> Iterator[None]:
    """``listener`` subscribed for the block only (listeners are process-wide)."""
    remove = add_listener(listener)
    try:
        yield
    finally:
        remove()
