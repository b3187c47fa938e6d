"""Read routing decisions without a database: tokens, verdicts, the router's bookkeeping."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from uuid import uuid4

import pytest
from sqlalchemy import create_engine as sqlalchemy_create_engine

from portfolio_core import (
    CommitOutcomeUnknownException,
    ConfigurationError,
    InsufficientFundsError,
    PortfolioStore,
    ValidationError,
)
from portfolio_core.errors import SHOWN_VALUE_LENGTH
from portfolio_core.persistence.read_routing import (
    ReadPolicy,
    ReadRouter,
    ReadToken,
    StandbyStatus,
    as_read_token,
    verdict,
)
from portfolio_core.replicas import noting_commit, token_from
from portfolio_core.units import Seconds

POLICY = ReadPolicy(max_lag=5.0, retry_standby_after=10.0)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now: Seconds = 100.0

    def __call__(self) -> Seconds:
        return self.now


def test_a_token_reads_and_writes_postgresql_lsn_text() -> None:
    token = ReadToken.parse("16/B374D848")

    assert token.lsn == (0x16 << 32) | 0xB374D848
    assert str(token) == "16/B374D848"
    assert ReadToken.parse(str(token)) == token
    assert ReadToken.parse(" 0/3000148 ") < ReadToken.parse("1/0")
    assert as_read_token(None) is None
    assert as_read_token(token) is token


@pytest.mark.parametrize(
    "garbage", ["", "16", "16/", "/1", "G/1", "1/2/3", "123456789/0", "-1/0", 42, None, b"0/1"]
)
def test_a_token_that_is_not_an_lsn_is_a_validation_error(garbage: object) -> None:
    with pytest.raises(ValidationError) as raised:
        ReadToken.parse(garbage)
    assert raised.value.field == "read_token"


def test_a_huge_garbage_token_is_quoted_truncated() -> None:
    with pytest.raises(ValidationError) as raised:
        as_read_token("x" * 1_000_000)
    assert len(str(raised.value)) < SHOWN_VALUE_LENGTH + 100


@pytest.mark.parametrize(
    "field", ["max_lag", "replay_wait", "poll_interval", "retry_standby_after"]
)
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1", True])
def test_a_policy_refuses_durations_that_are_not_finite_seconds(field: str, bad: object) -> None:
    with pytest.raises(ValidationError):
        ReadPolicy(**{field: bad})  # type: ignore[arg-type]


def test_verdict_reads_from_a_caught_up_standby() -> None:
    status = StandbyStatus(True, ReadToken(500), 0.0)

    assert verdict(status, None, POLICY) == "read"
    assert verdict(status, ReadToken(500), POLICY) == "read"
    assert verdict(status, ReadToken(501), POLICY) == "wait"


def test_verdict_leaves_a_standby_lagging_beyond_the_bound_or_of_unknown_lag() -> None:
    assert verdict(StandbyStatus(True, ReadToken(500), 5.0), None, POLICY) == "read"
    assert verdict(StandbyStatus(True, ReadToken(500), 5.5), None, POLICY) == "lagging"
    assert verdict(StandbyStatus(True, ReadToken(500), None), None, POLICY) == "lagging"


def test_verdict_waits_when_the_replayed_position_is_unknown() -> None:
    assert verdict(StandbyStatus(True, None, 0.0), ReadToken(1), POLICY) == "wait"
    assert verdict(StandbyStatus(True, None, 0.0), None, POLICY) == "read"


def test_verdict_on_a_server_not_in_recovery_compares_its_own_position() -> None:
    primary_like = StandbyStatus(False, ReadToken(900), None)

    assert verdict(primary_like, ReadToken(900), POLICY) == "read"
    assert verdict(primary_like, ReadToken(901), POLICY) == "wait"


def test_the_router_keeps_the_highest_commit_token_whatever_the_order() -> None:
    router: ReadRouter[str] = ReadRouter(["s1"], POLICY)
    assert router.last_commit_token() is None

    for lsn in (30, 10, 50, 20):
        router.note_commit(ReadToken(lsn))

    assert router.last_commit_token() == ReadToken(50)


def test_concurrent_commits_leave_the_highest_token() -> None:
    router: ReadRouter[str] = ReadRouter(["s1"], POLICY)
    start = threading.Barrier(8)

    def commit(base: int) -> None:
        start.wait()
        for lsn in range(base, 4000, 8):
            router.note_commit(ReadToken(lsn))

    threads = [threading.Thread(target=commit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert router.last_commit_token() == ReadToken(3999)


def test_a_read_needs_the_higher_of_its_own_and_the_explicit_token() -> None:
    router: ReadRouter[str] = ReadRouter(["s1"], POLICY)
    assert router.token_needed(None) is None
    assert router.token_needed(ReadToken(7)) == ReadToken(7)

    router.note_commit(ReadToken(40))

    assert router.token_needed(None) == ReadToken(40)
    assert router.token_needed(ReadToken(7)) == ReadToken(40)
    assert router.token_needed(ReadToken(90)) == ReadToken(90)


def test_without_read_your_writes_only_the_explicit_token_counts() -> None:
    router: ReadRouter[str] = ReadRouter(["s1"], ReadPolicy(read_your_writes=False))
    router.note_commit(ReadToken(40))
    router.note_commit(None)

    assert router.token_needed(None) is None
    assert router.token_needed(ReadToken(7)) == ReadToken(7)
    assert not router.must_learn_token()


def test_an_unknown_commit_token_holds_reads_until_one_is_learned() -> None:
    router: ReadRouter[str] = ReadRouter(["s1"], POLICY)
    router.note_commit(ReadToken(40))

    router.note_commit(None)
    assert router.must_learn_token()

    router.note_commit(ReadToken(60))
    assert not router.must_learn_token()
    assert router.last_commit_token() == ReadToken(60)


def test_a_token_read_before_an_unknown_commit_does_not_end_the_wait() -> None:
    router: ReadRouter[str] = ReadRouter(["s1"], POLICY)
    seen = router.unknown_commits()  # thread B, its commit returned, about to read its token
    router.note_commit(None)  # thread A: COMMIT outcome unknown, it may lie past B's token

    router.note_commit(ReadToken(50), seen)  # B's token, read before A's commit
    assert router.must_learn_token()
    assert router.last_commit_token() == ReadToken(50)

    router.note_commit(ReadToken(70), router.unknown_commits())  # learned after A's
    assert not router.must_learn_token()


def test_standbys_are_tried_in_turn() -> None:
    router: ReadRouter[str] = ReadRouter(["s1", "s2", "s3"], POLICY)

    firsts = [router.candidates()[0] for _ in range(4)]

    assert firsts == ["s1", "s2", "s3", "s1"]
    assert sorted(router.candidates()) == ["s1", "s2", "s3"]


def test_a_failed_standby_is_left_alone_for_a_while_then_tried_again() -> None:
    clock = FakeClock()
    router: ReadRouter[str] = ReadRouter(["s1", "s2"], POLICY, clock=clock)

    router.leave_alone("s1")

    assert router.candidates() == ["s2"]
    assert router.candidates() == ["s2"]
    clock.now += 9.9
    assert router.candidates() == ["s2"]
    clock.now += 0.1
    assert sorted(router.candidates()) == ["s1", "s2"]
    assert router.metrics() == {"standby_reads": 0, "primary_reads": 0, "standby_failures": 1}


def test_every_standby_left_alone_means_no_candidate() -> None:
    router: ReadRouter[str] = ReadRouter(["s1", "s2"], POLICY, clock=FakeClock())

    router.leave_alone("s1")
    router.leave_alone("s2")

    assert router.candidates() == []


def test_a_store_refuses_read_engines_that_are_not_engines() -> None:
    engine = sqlalchemy_create_engine("postgresql+psycopg2://u@127.0.0.1:1/db")
    try:
        for bad in ("postgresql://standby/db", ["postgresql://standby/db"], [object()]):
            with pytest.raises(ConfigurationError):
                PortfolioStore(engine, read_engines=bad)  # type: ignore[arg-type]
        assert PortfolioStore(engine).reads is None
        assert PortfolioStore(engine, read_engines=[engine]).reads is not None
    finally:
        engine.dispose()


def test_a_garbage_read_token_is_refused_before_any_sql() -> None:
    engine = sqlalchemy_create_engine("postgresql+psycopg2://u@127.0.0.1:1/db")
    try:
        store = PortfolioStore(engine)
        with pytest.raises(ValidationError):
            store.get(uuid4(), read_token="not-a-token")
    finally:
        engine.dispose()


BLOCK = 8192
SEGMENT = 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("insert_position", "token"),
    [
        ("0/3000148", "0/3000148"),  # mid-page: the end of the last record
        (f"0/{3 * BLOCK + 24:X}", f"0/{3 * BLOCK:X}"),  # just past a page header
        (f"1/{SEGMENT + 40:X}", f"1/{SEGMENT:X}"),  # just past a segment's first header
        (f"0/{3 * BLOCK + 40:X}", f"0/{3 * BLOCK + 40:X}"),  # 40 into a page: a record's end
    ],
)
def test_a_commit_token_past_a_page_header_is_the_page_boundary(
    insert_position: str, token: str
) -> None:
    assert token_from((insert_position, BLOCK, SEGMENT)) == ReadToken.parse(token)


@pytest.mark.parametrize(
    ("failure", "unknown"),
    [
        (CommitOutcomeUnknownException("lost during COMMIT"), True),
        (asyncio.CancelledError(), True),  # may have landed while COMMIT was in flight
        (InsufficientFundsError(uuid4(), Decimal(5), Decimal(1)), False),  # definite
    ],
)
def test_a_commit_whose_outcome_is_unknown_leaves_the_token_unknown(
    failure: BaseException, unknown: bool
) -> None:
    router: ReadRouter[str] = ReadRouter(["s1"], POLICY)
    router.note_commit(ReadToken(10))

    with pytest.raises(type(failure)), noting_commit(router):
        raise failure

    assert router.must_learn_token() is unknown
