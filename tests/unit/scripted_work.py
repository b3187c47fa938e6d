"""Scripted units of work for the retry tests: plain callables raising what a real one raises.

Nothing here touches a database; the sleep is injected, so nothing ever waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import UUID

from portfolio_core.concurrency import METRIC_NAMES, ConcurrencyService
from portfolio_core.errors import (
    ConnectionLostError,
    DeadlockException,
    PessimisticLockException,
    StaleDataException,
)

PID = UUID("00000000-0000-0000-0000-00000000000a")


class Script:
    """A unit of work that raises the scripted errors in turn, then returns ``result``."""

    def __init__(self, *errors: Callable[[], BaseException], result: str = "done") -> None:
        self._errors: Iterator[Callable[[], BaseException]] = iter(errors)
        self.result = result
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        make = next(self._errors, None)
        if make is not None:
            raise make()
        return self.result


class Always:
    """A unit of work that fails the same way on every call."""

    def __init__(self, make: Callable[[], BaseException]) -> None:
        self.make = make
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        raise self.make()


def stale() -> StaleDataException:
    return StaleDataException("Portfolio", PID, 3, 4)


def deadlock() -> DeadlockException:
    return DeadlockException("deadlock", entities=[("Portfolio", PID)])


def lock_refused() -> PessimisticLockException:
    return PessimisticLockException(
        "busy", entity_type="Portfolio", entity_id=PID, sqlstate="55P03"
    )


def connection_lost() -> ConnectionLostError:
    return ConnectionLostError("server closed the connection")


def make_service(waits: list[float], **options: object) -> ConcurrencyService:
    return ConcurrencyService(sleep=waits.append, **options)  # type: ignore[arg-type]


def zero_metrics(**overrides: int) -> dict[str, int]:
    return {name: overrides.get(name, 0) for name in METRIC_NAMES}


class FakeClock:
    """A clock that only moves when the injected sleep is called."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class DriverError(Exception):
    """Shaped like a psycopg2 error: the SQLSTATE is ``pgcode``."""

    def __init__(self, pgcode: str) -> None:
        super().__init__(pgcode)
        self.pgcode = pgcode
