"""Fault injection: terminate random demo backends, restart the embedded server once.

The injector is a thread of the parent process with a connection of its own
(never one of its victims). Every few hundred milliseconds it asks PostgreSQL
to terminate one backend of this run (``pg_terminate_backend``), preferring
backends that are busy; the workers see SQLSTATE 57P01 or a dropped
connection, and the library has to classify it (retry before COMMIT, outcome
unknown during COMMIT). When the demo owns an embedded server, the injector
also restarts it once, mid-run, cutting every connection at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portfolio_core.embedded import EmbeddedPostgres
from portfolio_core.persistence.engine import create_engine
from portfolio_core.units import Seconds

_TERMINATE = text(
    """
    SELECT pg_terminate_backend(pid)
    FROM pg_stat_activity
    WHERE application_name = :app AND pid <> pg_backend_pid()
    ORDER BY (state = 'idle'), random()
    LIMIT 1
    """
)


@dataclass
class FaultCounts:
    """What the injector did."""

    terminated: int = 0
    restarts: int = 0
    restart_seconds: Seconds = 0.0
    errors: list[str] = field(default_factory=list)


class FaultInjector(threading.Thread):
    """Terminates this run's backends at random intervals; restarts the server once.

    ``application_name`` selects the victims (the demo's connections carry
    it); ``server`` is the embedded server to restart, or None when the demo
    does not own one; ``restart_due()`` says when the restart should happen
    (after a few terminations); ``restarted`` (an Event) is set once it has.
    """

    def __init__(
        self,
        url: str,
        application_name: str,
        *,
        server: EmbeddedPostgres | None,
        restart_due: Callable[[], bool],
        seed: int,
        restarted: Any = None,
        interval: tuple[Seconds, Seconds] = (0.15, 0.45),
    ) -> None:
        super().__init__(name="demo-faults", daemon=True)
        self.application_name = application_name
        self.server = server
        self.restart_due = restart_due
        self.restarted = restarted
        self.rng = random.Random(f"faults:{seed}")
        self.interval = interval
        self.counts = FaultCounts()
        self.halt = threading.Event()
        # Bounded: stop() waits for this thread, so no statement of it may hang.
        self.engine = create_engine(
            url,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5, "options": "-c statement_timeout=5s"},
        )

    def run(self) -> None:
        """Inject faults until :meth:`stop`."""
        try:
            while not self.halt.wait(self.rng.uniform(*self.interval)):
                # A few terminations first, so that even a short run sees both kinds of fault.
                due = self.counts.terminated >= 3 and self.restart_due()
                if self.server is not None and not self.counts.restarts and due:
                    self._restart(self.server)
                else:
                    self._terminate_one()
        finally:
            self.engine.dispose()

    def _terminate_one(self) -> None:
        try:
            with self.engine.connect() as connection:
                hit = connection.execute(_TERMINATE, {"app": self.application_name}).scalar()
            self.counts.terminated += int(bool(hit))
        except SQLAlchemyError as error:
            # The server may be restarting; the next round tries again.
            self.counts.errors.append(type(error).__name__)

    def _restart(self, server: EmbeddedPostgres) -> None:
        started = time.monotonic()
        server.restart()
        self.counts.restarts += 1
        if self.restarted is not None:
            self.restarted.set()
        self.counts.restart_seconds = time.monotonic() - started
        self.engine.dispose()

    def stop(self) -> None:
        """Stop injecting and wait for the thread."""
        self.halt.set()
        self.join(timeout=120)
