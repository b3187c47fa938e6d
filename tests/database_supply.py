"""Each test's fresh database, copied from the template while the previous test runs.

``CREATE DATABASE ... TEMPLATE`` is most of the cost of a database test here
(it copies a few hundred files); a test's own work is often shorter. The
supply keeps one copy ready: when a test takes it, the next copy starts in a
background thread on a connection of its own, so the copying overlaps the
test instead of preceding it. Each test still gets a database nobody has
used, made from the migrated template, and dropped after it (tests/conftest.py).

Only the test server's catalog sees the copy in progress: it lives in a
database of its own, which no test connects to before taking it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from portfolio_core.testing import databases


class DatabaseSupply:
    """Fresh copies of ``template`` on the server at ``server_url``, one created ahead."""

    def __init__(self, server_url: str, template: str) -> None:
        self._template = template
        # One AUTOCOMMIT connection each: a copy in progress never delays a drop.
        self._creator = databases.admin_engine(server_url)
        self._dropper = databases.admin_engine(server_url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="database-supply")
        self._next: Future[str] | None = None

    def _create(self) -> str:
        name = databases.unique_name(databases.TEST_DATABASE_PREFIX)
        databases.create_database(self._creator, name, template=self._template)
        return name

    def take(self) -> str:
        """The name of a database no test has used; the next copy is started at once."""
        ready, self._next = self._next, None
        name = ready.result() if ready is not None else self._create()
        self._next = self._executor.submit(self._create)
        return name

    def drop(self, name: str) -> None:
        """Drop a database taken from the supply (connections still open on it are closed)."""
        databases.drop_database(self._dropper, name)

    def close(self) -> None:
        """Drop the copy made ahead, if any; stop the thread; close the connections."""
        try:
            if self._next is not None:
                self.drop(self._next.result())
        finally:
            self._next = None
            self._executor.shutdown()
            self._creator.dispose()
            self._dropper.dispose()
