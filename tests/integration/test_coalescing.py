"""Operation coalescing with threads: one leader, one COMMIT, each caller its own outcome.

Callers pile up behind a leader blocked on a row lock held by a raw
connection (``coalescing_tools.piled_up``), so each batch below is known.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from uuid import UUID

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from portfolio_core import (
    InsufficientFundsError,
    PessimisticLockException,
    Portfolio,
    PortfolioStore,
    ReentrantUnitOfWorkError,
    ValidationError,
    VersionMismatchError,
)
from portfolio_core.concurrency import ConcurrencyService
from portfolio_core.observability.hooks import (
    AttemptFinished,
    BaseStoreListener,
    StoreCallFinished,
    add_listener,
)
from tests.integration.coalescing_tools import (
    committed_state,
    event_rows,
    key_count,
    piled_up,
)


@pytest.fixture
def coalescing(engine: Engine, service: ConcurrencyService) -> PortfolioStore:
    return PortfolioStore(engine, service, coalesce=True)


def deposit(amount: str) -> Callable[[Portfolio], Decimal]:
    def operation(portfolio: Portfolio) -> Decimal:
        portfolio.deposit(Decimal(amount))
        return portfolio.cash_balance

    return operation


def withdraw(amount: str) -> Callable[[Portfolio], Decimal]:
    def operation(portfolio: Portfolio) -> Decimal:
        portfolio.withdraw(Decimal(amount))
        return portfolio.cash_balance

    return operation


def test_a_lone_caller_runs_at_once_and_gets_its_version(coalescing: PortfolioStore) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    answer = coalescing.execute_versioned(pid, deposit("5"), idempotency_key="lone")
    assert (answer.result, answer.version) == (Decimal("105"), 2)
    assert coalescing.coalescing_queue(pid) == 0


def test_piled_up_calls_commit_once_each_with_its_own_version_event_and_key(
    coalescing: PortfolioStore, engine: Engine
) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    amounts = ["1", "2", "3", "4", "5"]
    outcomes = piled_up(
        coalescing,
        engine,
        pid,
        [
            partial(coalescing.execute_versioned, pid, deposit(a), idempotency_key=f"k{a}")
            for a in amounts
        ],
    )
    seen = [(o.result.result, o.result.version) for o in outcomes]
    assert seen == [
        (Decimal(c), v)
        for c, v in zip(["101", "103", "106", "110", "115"], range(2, 7), strict=True)
    ]
    assert committed_state(engine, pid) == (6, Decimal("115"), 6)
    events = event_rows(engine, pid)
    assert [(version, key) for version, key, _ in events[1:]] == [
        (v, f"k{a}") for v, a in zip(range(2, 7), amounts, strict=True)
    ]
    # The first caller led; the four queued while it waited for the row joined its COMMIT.
    assert len({occurred for _, _, occurred in events[1:]}) == 1
    for result, version in seen:
        assert coalescing.replay(pid, version).cash_balance == result
    assert len(coalescing.history(pid)) == coalescing.get(pid).version


def test_an_operation_that_raises_leaves_no_trace_and_the_others_apply(
    coalescing: PortfolioStore, engine: Engine
) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))

    def deposit_then_fail(portfolio: Portfolio) -> None:
        portfolio.deposit(Decimal("1000"))
        raise RuntimeError("changed its mind")

    def open_then_fail(portfolio: Portfolio) -> None:
        portfolio.withdraw(Decimal("50"))
        raise KeyError("no")

    outcomes = piled_up(
        coalescing,
        engine,
        pid,
        [
            lambda: coalescing.execute(pid, deposit("1")),
            lambda: coalescing.execute(pid, deposit("10")),
            lambda: coalescing.execute(pid, withdraw("5000")),
            lambda: coalescing.execute(pid, deposit_then_fail),
            lambda: coalescing.execute(pid, deposit("20"), idempotency_key="after"),
            lambda: coalescing.execute(pid, open_then_fail),
            lambda: coalescing.execute(pid, withdraw("31")),
        ],
    )
    assert [o.result for o in outcomes] == [
        Decimal("101"),
        Decimal("111"),
        None,
        None,
        Decimal("131"),
        None,
        Decimal("100"),
    ]
    assert isinstance(outcomes[2].error, InsufficientFundsError)
    assert isinstance(outcomes[3].error, RuntimeError)
    assert isinstance(outcomes[5].error, KeyError)
    assert committed_state(engine, pid) == (5, Decimal("100"), 5)
    assert coalescing.replay(pid).cash_balance == Decimal("100")


def test_expected_version_is_checked_against_the_version_each_operation_sees(
    coalescing: PortfolioStore, engine: Engine
) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    outcomes = piled_up(
        coalescing,
        engine,
        pid,
        [partial(coalescing.execute, pid, deposit("1"), expected_version=e) for e in (1, 2, 2, 3)],
    )
    assert [o.result for o in outcomes] == [Decimal("101"), Decimal("102"), None, Decimal("103")]
    assert isinstance(outcomes[2].error, VersionMismatchError)
    assert committed_state(engine, pid) == (4, Decimal("103"), 4)


def test_keyed_repeats_in_a_batch_return_the_stored_result_and_apply_once(
    coalescing: PortfolioStore, engine: Engine
) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    assert coalescing.execute(pid, deposit("7"), idempotency_key="earlier") == Decimal("107")
    outcomes = piled_up(
        coalescing,
        engine,
        pid,
        [
            lambda: coalescing.execute(pid, deposit("1")),
            lambda: coalescing.execute(pid, deposit("7"), idempotency_key="earlier"),
            lambda: coalescing.execute(pid, deposit("9"), idempotency_key="twice"),
            lambda: coalescing.execute(pid, deposit("9"), idempotency_key="twice"),
            lambda: coalescing.execute(pid, deposit("2")),
        ],
    )
    assert [o.error for o in outcomes] == [None] * 5
    assert [o.result for o in outcomes] == [
        Decimal("108"),
        Decimal("107"),
        Decimal("117"),
        Decimal("117"),
        Decimal("119"),
    ]
    assert committed_state(engine, pid) == (5, Decimal("119"), 5)
    assert key_count(engine, "twice") == 1
    assert key_count(engine, "earlier") == 1


def test_lock_modes_with_coalescing(coalescing: PortfolioStore, store: PortfolioStore) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    with pytest.raises(ValidationError):
        store.execute(pid, deposit("1"), lock="nowait", coalesce=True)
    with pytest.raises(ValidationError):
        PortfolioStore(store.engine, coalesce_max_batch=0)
    # The store's default leaves an explicit optimistic call uncoalesced.
    assert coalescing.execute(pid, deposit("1"), lock="optimistic") == Decimal("101")
    assert store.execute(pid, deposit("1"), lock="wait", coalesce=True) == Decimal("102")


def test_a_reentrant_call_fails_its_own_caller_only(
    coalescing: PortfolioStore, engine: Engine
) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))

    def reenter(portfolio: Portfolio) -> None:
        coalescing.execute(pid, deposit("1"))

    outcomes = piled_up(
        coalescing,
        engine,
        pid,
        [
            lambda: coalescing.execute(pid, deposit("1")),
            lambda: coalescing.execute(pid, reenter),
            lambda: coalescing.execute(pid, deposit("2")),
        ],
    )
    assert isinstance(outcomes[1].error, ReentrantUnitOfWorkError)
    assert [outcomes[0].result, outcomes[2].result] == [Decimal("101"), Decimal("103")]
    assert committed_state(engine, pid) == (3, Decimal("103"), 3)


def test_unknown_portfolio_fails_every_caller(coalescing: PortfolioStore) -> None:
    from portfolio_core import PortfolioNotFoundError

    with pytest.raises(PortfolioNotFoundError):
        coalescing.execute(UUID(int=7), deposit("1"))


def test_a_queued_caller_waits_a_bounded_time_and_the_leader_still_finishes(
    engine: Engine,
) -> None:
    coalescing = PortfolioStore(engine, ConcurrencyService(engine, max_retries=0), coalesce=True)
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    leader_inside, go_on = threading.Event(), threading.Event()

    def slow_deposit(portfolio: Portfolio) -> Decimal:
        leader_inside.set()
        go_on.wait(60)
        portfolio.deposit(Decimal("1"))
        return portfolio.cash_balance

    leader = threading.Thread(target=coalescing.execute, args=(pid, slow_deposit))
    leader.start()
    assert leader_inside.wait(60)
    try:
        # Queued behind a leader that holds the row: it gives up after 0.2 s + 0.2 s.
        with pytest.raises(PessimisticLockException):
            coalescing.execute(pid, deposit("5"), lock_timeout=0.2)
        assert coalescing.coalescing_queue(pid) == 0
    finally:
        go_on.set()
        leader.join(60)
    assert committed_state(engine, pid) == (2, Decimal("101"), 2)
    assert coalescing.execute(pid, deposit("5")) == Decimal("106")  # the lane was released


class Recorder(BaseStoreListener):
    def __init__(self) -> None:
        self.finished: list[StoreCallFinished] = []
        self.attempts: list[AttemptFinished] = []

    def attempt_finished(self, attempt: AttemptFinished) -> None:
        self.attempts.append(attempt)

    def call_finished(self, call: StoreCallFinished) -> None:
        self.finished.append(call)


def test_listeners_see_one_call_and_one_attempt_per_coalesced_operation(
    coalescing: PortfolioStore, engine: Engine
) -> None:
    pid = coalescing.create_portfolio("alpha", Decimal("100"))
    recorder = Recorder()
    remove = add_listener(recorder)
    try:
        outcomes = piled_up(
            coalescing,
            engine,
            pid,
            [
                partial(coalescing.execute, pid, deposit("1"), idempotency_key="o1"),
                partial(coalescing.execute, pid, withdraw("1000")),
                partial(coalescing.execute_versioned, pid, deposit("2"), lock="wait"),
            ],
        )
    finally:
        remove()
    assert isinstance(outcomes[1].error, InsufficientFundsError)
    by_operation = sorted((c.call.operation, c.outcome, c.attempts) for c in recorder.finished)
    assert by_operation == [
        ("execute", "error:InsufficientFundsError", 1),
        ("execute", "ok", 1),
        ("execute_versioned", "ok", 1),
    ]
    assert sorted(a.outcome for a in recorder.attempts) == [
        "error:InsufficientFundsError",
        "ok",
        "ok",
    ]
    assert {c.call.portfolio_ids for c in recorder.finished} == {(pid,)}


def test_batches_are_bounded_by_coalesce_max_batch(
    engine: Engine, service: ConcurrencyService
) -> None:
    small = PortfolioStore(engine, service, coalesce=True, coalesce_max_batch=2)
    pid = small.create_portfolio("alpha", Decimal("100"))
    outcomes = piled_up(
        small, engine, pid, [partial(small.execute, pid, deposit("1")) for _ in range(5)]
    )
    assert [o.result for o in outcomes] == [Decimal(101 + n) for n in range(5)]
    commits = Counter(occurred for _, _, occurred in event_rows(engine, pid)[1:])
    assert sorted(commits.values()) == [1, 2, 2]  # the leader's batch, then two of two


def test_the_event_trigger_admits_versions_up_to_the_one_this_transaction_wrote(
    store: PortfolioStore, engine: Engine
) -> None:
    pid = store.create_portfolio("alpha", Decimal("100"))
    event = text(
        "INSERT INTO portfolio_events (portfolio_id, version, operations) VALUES (:p, :v, '[]')"
    )
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE portfolios SET version = version + 2 WHERE id = :p"), {"p": pid}
        )
        connection.execute(event, {"p": pid, "v": 2})
        connection.execute(event, {"p": pid, "v": 3})
    with engine.connect() as connection, connection.begin():
        connection.execute(
            text("UPDATE portfolios SET version = version + 1 WHERE id = :p"), {"p": pid}
        )
        with pytest.raises(DBAPIError, match="newest event is at version 3"):
            connection.execute(event, {"p": pid, "v": 3})  # below, but it has its event
    with pytest.raises(DBAPIError, match="did not bump"), engine.begin() as connection:
        connection.execute(event, {"p": pid, "v": 2})  # a transaction that wrote nothing
    assert [e.version for e in store.history(pid)] == [1, 2, 3]
