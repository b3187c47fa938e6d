"""pg_auto_failover moves the primary under a keyed write load: every write exactly once.

A monitor and two nodes (:class:`AutoFailoverFormation`, tuned health
checks). The library is given the formation's multi-host URI (``pg_autoctl
show uri --formation default``) in SQLAlchemy's form for the threads
(psycopg2) and libpq's for the asyncio tasks (asyncpg), as in
``test_failover.py``. First a planned ``pg_autoctl perform failover``, then
a ``kill -9`` of the primary node (its pg_autoctl and its postgres): the
monitor promotes the standby. pg_auto_failover replicates synchronously by
default (``ANY 1 (...)``, checked), so no acknowledged write may be lost.
The longest gap between two acknowledged writes is printed and recorded
(not asserted: no timing assertions).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest

from portfolio_core import PortfolioStore, create_engine, migrate
from portfolio_core.units import Seconds
from tests.topology.auto_failover import AutoFailoverFormation
from tests.topology.load import assert_applied_exactly_once, patient_service, under_load

THREADS = 3
TASKS = 3
WRITES_BEFORE = 30
WRITES_AFTER = 30


@pytest.fixture(scope="module")
def formation() -> Iterator[AutoFailoverFormation]:
    """A migrated formation shared by the module: the planned failover, then the kill."""
    with AutoFailoverFormation() as started:
        migrate(started.url())
        yield started


def _roles(formation: AutoFailoverFormation) -> tuple[str, str]:
    """(primary, standby) once both are settled: ``primary`` and ``secondary``."""
    primary = formation.primary()
    standby = next(name for name in formation.ports if name != primary)
    formation.wait_for({primary: "primary", standby: "secondary"})
    return primary, standby


def _under_load(
    formation: AutoFailoverFormation, label: str, action: Callable[[], None], record: Any
) -> None:
    """Keyed writes from threads and tasks; ``action`` once some are acknowledged; then check."""
    engine = create_engine(formation.url(), pool_size=THREADS, max_overflow=THREADS)
    store = PortfolioStore(engine, patient_service(engine))
    thread_pids = {f"{label}-thread{i}": store.create_portfolio(f"t{i}") for i in range(THREADS)}
    task_pids = {f"{label}-task{i}": store.create_portfolio(f"a{i}") for i in range(TASKS)}
    timed: list[Seconds] = []

    def timed_action() -> None:
        started = time.monotonic()
        action()
        timed.append(time.monotonic() - started)

    load = under_load(
        store,
        formation.libpq_url(),
        (thread_pids, task_pids),
        timed_action,
        before=WRITES_BEFORE,
        after=WRITES_AFTER,
    )
    [action_s] = timed

    gaps = {
        "threads": load.longest_gap(f"{label}-thread"),
        "tasks": load.longest_gap(f"{label}-task"),
    }
    summary = {
        "acknowledged": len(load.acknowledged),
        "caller_retries": load.caller_retries,
        "action_s": round(action_s, 3),
        "longest_gap_s": {name: round(gap, 3) for name, gap in gaps.items()},
    }
    print(f"\n{label}: {summary}")
    for name, value in summary.items():
        record(f"{label}_{name}", value)

    assert_applied_exactly_once(load, store, {**thread_pids, **task_pids}, f"{label}-%")
    engine.dispose()


def test_perform_failover_applies_every_keyed_write_exactly_once(
    formation: AutoFailoverFormation, record_property: Any
) -> None:
    _, standby = _roles(formation)

    def failover() -> None:
        formation.autoctl("perform", "failover")  # returns once the new primary is in place

    _under_load(formation, "perform", failover, record_property)
    assert formation.primary() == standby


def test_kill_9_of_the_primary_loses_no_acknowledged_write(
    formation: AutoFailoverFormation, record_property: Any
) -> None:
    primary, standby = _roles(formation)
    url = formation.superuser_url(formation.ports[primary])
    with psycopg2.connect(url) as db, db.cursor() as cursor:
        cursor.execute("SHOW synchronous_standby_names")
        names = (cursor.fetchone() or [""])[0]
        cursor.execute("SHOW synchronous_commit")
        commit = (cursor.fetchone() or [""])[0]
    db.close()
    # The default of a 2-node formation: a COMMIT waits for the standby.
    assert (names.startswith("ANY 1 ("), commit) == (True, "on"), names

    _under_load(formation, "kill", lambda: formation.kill(primary), record_property)
    assert formation.states()[standby][1] in ("wait_primary", "primary")
