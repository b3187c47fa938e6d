"""The benchmark's scenarios, defined once: library, raw SQL and naive ORM on one database.

:data:`SCENARIOS` names each scenario by its report key. What a scenario does
(which portfolios, which deposits, which prices), the rounds, and the checks
live here, in :class:`Bench`; how workers run (threads and psycopg2, or asyncio
tasks and asyncpg) is a :class:`Driver`'s only job (``threads``,
``async_scenarios``).

Every contender works on portfolios of its own, so what each one committed can
be checked afterwards against the database: the version moved by exactly the
number of commits and the cash by exactly the sum deposited (for re-pricing:
exactly one version bump per call). A mismatch is an error, not a number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Protocol

from sqlalchemy import Engine

from portfolio_core.bench import raw
from portfolio_core.bench.contenders import (
    COALESCED,
    COUNTED_BY_METRICS,
    NAIVE_ORM,
    Side,
    summarize_hot,
    summarize_uncontended,
)
from portfolio_core.bench.harness import Sample, summarize
from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.store import LOCK_MODES, LockMode, PortfolioStore
from portfolio_core.units import Seconds

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

AMOUNT: Final = Decimal("1.25")
OPENING_CASH: Final = Decimal("1000000")
FAILED_ATTEMPT_METRICS: Final = ("version_conflicts", "lock_timeouts", "deadlocks_detected")
"""The library's metrics that count a failed attempt (attempts = commits + these)."""


def counting_attempts(service: ConcurrencyService, side: Side, run: Callable[[], Sample]) -> Sample:
    """Run ``run()``; for the library, attempts = commits + the failed attempts it counted."""
    before = service.get_metrics()
    sample = run()
    if side not in COUNTED_BY_METRICS:
        return sample
    after = service.get_metrics()
    failed = sum(after[name] - before[name] for name in FAILED_ATTEMPT_METRICS)
    return sample.with_attempts(len(sample.latencies) + failed)


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does (``quick`` shrinks it for the smoke test).

    ``uncontended_ops`` is per worker, ``hot_ops`` per contender (split among
    its workers); both are split into ``rounds`` interleaved rounds.
    """

    uncontended_ops: int = 300
    hot_ops: int = 1500
    reprice_positions: int = 10_000
    reprice_rounds: int = 12
    warmup_ops: int = 20
    rounds: int = 3
    repeat_history: int = 10_000
    repeat_calls: int = 30
    scale_portfolios: int = 100_000
    scale_positions: int = 10_000
    scale_ops: int = 60


QUICK: Final = Sizes(
    uncontended_ops=4,
    hot_ops=32,
    reprice_positions=300,
    reprice_rounds=2,
    warmup_ops=0,
    rounds=1,
    repeat_history=200,
    repeat_calls=3,
    scale_portfolios=300,
    scale_positions=200,
    scale_ops=3,
)


@dataclass(frozen=True)
class Deposits:
    """One contender's work: each operation deposits AMOUNT into one of ``ids``.

    ``pick(worker, index)`` says which (an index into ``ids``). The raw side
    with ``lock="wait"`` takes SELECT ... FOR UPDATE; with ``"optimistic"`` a
    versioned UPDATE, re-run when the version moved. The library side runs
    ``PortfolioStore.execute(deposit, lock=lock)``; the naive ORM side
    ``session.get`` (``with_for_update`` when ``lock="wait"``) and commit.
    """

    side: Side
    ids: Sequence[str]
    pick: Callable[[int, int], int]
    lock: LockMode = "optimistic"


@dataclass(frozen=True)
class Prices:
    """One re-pricing call's prices, built before any timing in both shapes callers use."""

    pairs: list[tuple[str, Decimal]]
    by_symbol: dict[str, Decimal]


def reprice_prices(count: int, round_number: int) -> Prices:
    """The prices of every position ``S000001..`` in one round (each round differs)."""
    pairs = [
        (f"S{n:06d}", Decimal(f"{11 + round_number}.{n % 97:02d}")) for n in range(1, count + 1)
    ]
    return Prices(pairs, dict(pairs))


class Driver(Protocol):
    """How one flavour runs the scenarios' operations (threads or asyncio tasks)."""

    @property
    def label(self) -> str:
        """Prefixes the errors of this flavour's checks."""
        ...

    def deposits(self, workers: int, ops_per_worker: int, work: Deposits) -> Sample:
        """Run ``work`` in ``workers`` concurrent workers, timed; attempts counted."""
        ...

    def reprice(self, side: Side, portfolio_id: str, prices: Prices) -> int:
        """One re-pricing call of ``side`` on ``portfolio_id``; the positions it re-priced."""
        ...


def bench_service(engine: Engine | AsyncEngine) -> ConcurrencyService:
    """The library's retry policy in the bench: small jittered delays, no giving up.

    Enough that every optimistic and NOWAIT operation eventually commits, as
    the scenarios require.
    """
    return ConcurrencyService(
        engine, max_retries=100_000, base_delay=0.0005, max_delay=0.01, deadline=300.0
    )


class Bench:
    """One database: makes each scenario's portfolios, runs its rounds, checks the outcome."""

    def __init__(self, engine: Engine, connections: Sequence[raw.Connection], sizes: Sizes):
        self.engine = engine
        self.connections = connections
        self.sizes = sizes
        self.service = bench_service(engine)
        self.store = PortfolioStore(engine, self.service)
        self.coalescing_store = PortfolioStore(engine, self.service, coalesce=True)
        self.admin = raw.connect(engine.url)
        self.admin.autocommit = True
        self.created: list[str] = []

    def close(self) -> None:
        """Delete every portfolio the run created (positions cascade) and disconnect."""
        with self.admin.cursor() as cursor:
            cursor.execute("DELETE FROM portfolios WHERE id = ANY(%s::uuid[])", (self.created,))
        self.admin.close()

    # -- the database side --------------------------------------------------------

    def portfolios(self, count: int) -> list[str]:
        """``count`` new portfolios with OPENING_CASH (deleted by :meth:`close`)."""
        ids = [str(self.store.create_portfolio(f"bench-{n}", OPENING_CASH)) for n in range(count)]
        self.created.extend(ids)
        return ids

    def big_portfolio(self, positions: int) -> str:
        """A portfolio holding ``positions`` open positions ``S000001..``, inserted in bulk."""
        (pid,) = self.portfolios(1)
        with self.admin.cursor() as cursor:
            cursor.execute(
                "INSERT INTO positions (portfolio_id, id, symbol, quantity, cost_basis, "
                "current_price, version) SELECT %s, gen_random_uuid(), "
                "'S' || lpad(g::text, 6, '0'), 1, 10, 10, 1 FROM generate_series(1, %s) AS g",
                (pid, positions),
            )
            # Keep the money invariant true: the positions were bought with opening cash.
            cursor.execute(
                "UPDATE portfolios SET initial_cash = initial_cash + %s WHERE id = %s",
                (Decimal(10) * positions, pid),
            )
            cursor.execute("ANALYZE positions")
        return pid

    def version(self, pid: str) -> int:
        """The portfolio's version, read outside the library."""
        with self.admin.cursor() as cursor:
            cursor.execute("SELECT version FROM portfolios WHERE id = %s", (pid,))
            return int(raw.fetch_row(cursor)[0])

    def _state(self, ids: Sequence[str]) -> tuple[int, Decimal, Decimal]:
        """Summed over ``ids``: versions, cash balances, total deposits."""
        with self.admin.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(version), 0), coalesce(sum(cash_balance), 0), "
                "coalesce(sum(total_deposits), 0) FROM portfolios WHERE id = ANY(%s::uuid[])",
                (list(ids),),
            )
            versions, cash, deposits = raw.fetch_row(cursor)
        return int(versions), Decimal(cash), Decimal(deposits)

    # -- rounds and checks --------------------------------------------------------------

    def contend(
        self, driver: Driver, workers: int, ops_per_round: int, contenders: Mapping[str, Deposits]
    ) -> dict[str, dict[str, Any]]:
        """Warm each contender up, run them in interleaved rounds, check what each committed.

        A contender's portfolios must move by exactly its commits: versions by
        one each, cash and total deposits by AMOUNT each. Anything else raises
        AssertionError.
        """
        for work in contenders.values():
            driver.deposits(workers, self.sizes.warmup_ops, work)
        before = {name: self._state(work.ids) for name, work in contenders.items()}
        samples: dict[str, list[Sample]] = {name: [] for name in contenders}
        for _ in range(self.sizes.rounds):
            for name, work in contenders.items():
                samples[name].append(driver.deposits(workers, ops_per_round, work))
        reports: dict[str, dict[str, Any]] = {}
        for name, work in contenders.items():
            stats = summarize(samples[name])
            (versions, cash, deposits), (versions0, cash0, deposits0) = (
                self._state(work.ids),
                before[name],
            )
            moved = (versions - versions0, cash - cash0, deposits - deposits0)
            report = stats.as_dict()
            report["verified"] = {
                "version_delta": moved[0],
                "cash_delta": str(moved[1]),
                "deposits_delta": str(moved[2]),
                "expected_cash_delta": str(AMOUNT * stats.commits),
            }
            if moved != (stats.commits, AMOUNT * stats.commits, AMOUNT * stats.commits):
                raise AssertionError(
                    f"{driver.label}{name}: committed work does not match the counts {report}"
                )
            reports[name] = report
        return reports

    # -- the scenarios ------------------------------------------------------------------

    def uncontended(
        self, driver: Driver, workers: int = 8, portfolio_count: int = 64
    ) -> dict[str, Any]:
        """(a) ``workers`` workers, each on its own slice of ``portfolio_count`` portfolios."""
        per_round = max(1, self.sizes.uncontended_ops // self.sizes.rounds)
        per_worker = portfolio_count // workers

        def pick(worker: int, index: int) -> int:
            return worker * per_worker + index % per_worker

        reports = self.contend(
            driver,
            workers,
            per_round,
            {
                "raw": Deposits("raw", self.portfolios(portfolio_count), pick),
                "library": Deposits("library", self.portfolios(portfolio_count), pick),
                COALESCED: Deposits(COALESCED, self.portfolios(portfolio_count), pick, "auto"),
                NAIVE_ORM: Deposits(NAIVE_ORM, self.portfolios(portfolio_count), pick),
            },
        )
        return summarize_uncontended(workers, portfolio_count, reports)

    def hot(self, driver: Driver, workers: int) -> dict[str, Any]:
        """(b) ``workers`` workers on ONE portfolio: raw FOR UPDATE, then each lock mode."""
        per_round = max(1, self.sizes.hot_ops // workers // self.sizes.rounds)

        def only(worker: int, index: int) -> int:
            return 0

        contenders = {"raw": Deposits("raw", self.portfolios(1), only, lock="wait")}
        for mode in LOCK_MODES:
            contenders[mode] = Deposits("library", self.portfolios(1), only, lock=mode)
        contenders[COALESCED] = Deposits(COALESCED, self.portfolios(1), only, lock="auto")
        contenders[NAIVE_ORM] = Deposits(NAIVE_ORM, self.portfolios(1), only, lock="wait")
        reports = self.contend(driver, workers, per_round, contenders)
        return summarize_hot(workers, per_round * self.sizes.rounds, reports, LOCK_MODES)

    def reprice(self, driver: Driver) -> dict[str, Any]:
        """(c) update_all_prices on every position vs one raw UPDATE ... FROM the price list.

        The sides take turns (who goes first alternates), as in the other
        scenarios, and swap portfolios every round: the two portfolios'
        positions lie differently in the shared table (10,000 dead rows per
        call until vacuumed), which must not favour one side for a whole run.
        """
        count, rounds = self.sizes.reprice_positions, self.sizes.reprice_rounds
        # What a caller would pass is built before any timing, for both sides.
        prices = [reprice_prices(count, r) for r in range(rounds + 1)]
        held = [self.big_portfolio(count), self.big_portfolio(count)]
        sides: tuple[Side, Side] = ("raw", "library")
        latencies: dict[Side, list[Seconds]] = {side: [] for side in sides}
        bumps: dict[Side, list[int]] = {side: [] for side in sides}
        cpu: dict[Side, Seconds] = dict.fromkeys(sides, 0.0)
        for side, pid in zip(sides, held, strict=True):
            driver.reprice(side, pid, prices[rounds])  # warm-up (caches, prepared statements)
        for r in range(rounds):
            # Even rounds: raw on the first portfolio, first; odd: library first, on it.
            turns = list(zip(sides, held[r % 2 :] + held[: r % 2], strict=True))
            for side, pid in turns[:: 1 if r % 2 == 0 else -1]:
                before = self.version(pid)
                started, cpu_started = time.perf_counter(), time.process_time()
                changed = driver.reprice(side, pid, prices[r])
                latencies[side].append(time.perf_counter() - started)
                cpu[side] += time.process_time() - cpu_started
                bumps[side].append(self.version(pid) - before)
                if changed != count:
                    raise AssertionError(
                        f"{driver.label}{side} re-priced {changed} of {count} positions"
                    )
        result: dict[str, Any] = {"positions": count, "rounds": rounds}
        for side in sides:
            if bumps[side] != [1] * rounds:
                raise AssertionError(
                    f"{driver.label}{side} bumped the version {bumps[side]}, not once per call"
                )
            sample = Sample(1, latencies[side], rounds, sum(latencies[side]), cpu[side])
            report = summarize([sample]).as_dict()
            report["version_bumps"] = bumps[side]
            report["positions_repriced_per_call"] = count
            result[side] = report
        # Exact times: ops_per_s is rounded to 0.1, coarse at about 3 calls/s.
        result["ratio"] = round(sum(latencies["raw"]) / sum(latencies["library"]), 3)
        return result


SCENARIOS: Final[Mapping[str, Callable[[Bench, Driver], dict[str, Any]]]] = {
    "uncontended": lambda bench, driver: bench.uncontended(driver),
    "hot_8": lambda bench, driver: bench.hot(driver, 8),
    "hot_32": lambda bench, driver: bench.hot(driver, 32),
    "reprice": lambda bench, driver: bench.reprice(driver),
}
"""Every scenario by its report key, in the order they run and are printed."""


def run_scenarios(bench: Bench, driver: Driver) -> dict[str, dict[str, Any]]:
    """Every scenario of :data:`SCENARIOS` with ``driver``'s workers, by report key."""
    return {name: scenario(bench, driver) for name, scenario in SCENARIOS.items()}
