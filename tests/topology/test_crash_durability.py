"""An immediate crash of the primary: which acknowledged writes does the promoted standby have?

Writers from threads deposit with idempotency keys into a primary whose
standby streams through a relay (tests/topology/relay.py). The relay is held,
so the standby lags for certain, not by luck; then the primary is killed
(``pg_ctl stop -m immediate``) and the standby promoted. An acknowledged
write missing on the new primary is a lost write.

* synchronous replication (``synchronous_standby_names = '*'``): the primary
  acknowledges a COMMIT only once the standby has it. Held, the writers wait
  (``SyncRep``) instead of being acknowledged; after the crash none is lost.
* asynchronous replication (the default): acknowledgements go on while the
  standby receives nothing; every write begun after the hold is lost.

The counts are printed and recorded.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, text

from portfolio_core import ConcurrencyService, PortfolioStore, create_engine, migrate
from tests.topology.load import Load
from tests.topology.servers import ReplicatedPair

WRITERS = 4
WRITES_BEFORE_HOLD = 100
WRITES_WHILE_HELD = 100


def _wait_until_all_wait_for_the_standby(engine: Engine) -> None:
    """Poll the primary until every writer's COMMIT waits for the standby (``SyncRep``)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
    deadline = time.monotonic() + 60
    with engine.connect() as connection:
        while connection.execute(query).scalar_one() < WRITERS:
            connection.rollback()
            if time.monotonic() > deadline:
                raise AssertionError("the writers never waited for the standby")


def _begun_after(load: Load, snapshot: set[str]) -> set[str]:
    """Acknowledged keys of writes begun after ``snapshot`` was taken (not merely in flight)."""
    last: dict[str, int] = {}
    for key in snapshot:
        writer, number = key.rsplit("-", 1)
        last[writer] = max(last.get(writer, -1), int(number))
    return {
        key
        for key in load.acknowledged
        if int(key.rsplit("-", 1)[1]) >= last.get(key.rsplit("-", 1)[0], -1) + 2
    }


@pytest.mark.parametrize("synchronous", [True, False], ids=["synchronous", "asynchronous"])
def test_acknowledged_writes_after_an_immediate_crash(
    synchronous: bool, record_property: Any
) -> None:
    with ReplicatedPair(synchronous=synchronous, relayed=True) as pair:
        if pair.relay is None:
            raise AssertionError("no relay")
        migrate(pair.primary.url)
        engine = create_engine(pair.primary.url, pool_size=WRITERS + 1, max_overflow=0)
        # No retries: a writer stops at its first error, the crash.
        store = PortfolioStore(engine, ConcurrencyService(engine, max_retries=0, deadline=None))
        pids = {f"writer{i}": store.create_portfolio(f"writer{i}") for i in range(WRITERS)}
        load = Load(stop_on_error=True)
        writers = [
            threading.Thread(target=load.thread_writer(store, pid, name))
            for name, pid in pids.items()
        ]
        for writer in writers:
            writer.start()
        try:
            load.wait_for(WRITES_BEFORE_HOLD)
            pair.relay.hold()
            with load.progress:
                at_hold = set(load.acknowledged)
            if synchronous:
                _wait_until_all_wait_for_the_standby(engine)
            else:
                load.wait_for(len(at_hold) + 2 * WRITERS + WRITES_WHILE_HELD)
            pair.stop_primary(immediate=True)
        finally:
            load.stop.set()
            for writer in writers:
                writer.join(timeout=60)
        engine.dispose()
        pair.promote_standby()
        survivor = create_engine(pair.url())
        with survivor.connect() as connection:
            applied = set(
                connection.execute(text("SELECT idempotency_key FROM portfolio_events")).scalars()
            )
        survivor.dispose()

    acknowledged = set(load.acknowledged)
    lost = acknowledged - applied
    mode = "synchronous" if synchronous else "asynchronous"
    errors = collections.Counter(failure.split(": ")[1] for failure in load.failures)
    print(
        f"\ncrash ({mode} replication): {len(acknowledged)} acknowledged, {len(lost)} lost, "
        f"writers stopped by {dict(errors)}"
    )
    record_property("acknowledged", len(acknowledged))
    record_property("lost", len(lost))
    if synchronous:
        assert lost == set()
    else:
        assert _begun_after(load, at_hold) <= lost
