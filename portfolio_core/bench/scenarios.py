"""The three benchmark scenarios, library next to raw psycopg2 on one database.

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
from functools import partial
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Engine

from portfolio_core.bench import raw
from portfolio_core.bench.harness import Sample, run_workers, summarize
from portfolio_core.concurrency.service import ConcurrencyService
from portfolio_core.domain.portfolio import Portfolio
from portfolio_core.store import LOCK_MODES, PortfolioStore

AMOUNT: Final = Decimal("1.25")
OPENING_CASH: Final = Decimal("1000000")
_FAILED_ATTEMPT_METRICS: Final = ("version_conflicts", "lock_timeouts", "deadlocks_detected")


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: the portfolios it writes and one timed round of it."""

    ids: Sequence[str]
    run: Callable[[], Sample]


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does (``quick`` shrinks it for the smoke test).

    ``uncontended_ops`` is per worker, ``hot_ops`` per contender (split among
    its workers); both are split into ``rounds`` interleaved rounds.
    """

    uncontended_ops: int = 300
    hot_ops: int = 1500
    reprice_positions: int = 10_000
    reprice_rounds: int = 8
    warmup_ops: int = 20
    rounds: int = 3


QUICK: Final = Sizes(
    uncontended_ops=4,
    hot_ops=64,
    reprice_positions=300,
    reprice_rounds=2,
    warmup_ops=2,
    rounds=1,
)


def summarize_hot(
    workers: int, ops_per_worker: int, reports: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """The hot-portfolio result: each lock mode's ratio to raw, and the best mode."""
    raw_rate = reports["raw"]["ops_per_s"]
    modes = {mode: reports[mode] for mode in LOCK_MODES}
    for report in modes.values():
        report["ratio"] = round(report["ops_per_s"] / raw_rate, 3)
    best = max(modes, key=lambda name: modes[name]["ops_per_s"])
    return {
        "workers": workers,
        "ops_per_worker": ops_per_worker,
        "raw": reports["raw"],
        "library": modes,
        "best_mode": best,
        "ratio": modes[best]["ratio"],
        "best_attempts_per_commit": modes[best]["attempts_per_commit"],
    }


class Bench:
    """One database, one engine, one raw pool: runs the scenarios and checks the outcome."""

    def __init__(self, engine: Engine, connections: Sequence[raw.Connection], sizes: Sizes):
        self.engine = engine
        self.connections = connections
        self.sizes = sizes
        # Retries with small, jittered delays: enough that every optimistic and
        # NOWAIT operation eventually commits, as the scenario requires.
        self.service = ConcurrencyService(
            engine, max_retries=100_000, base_delay=0.0005, max_delay=0.01, deadline=300.0
        )
        self.store = PortfolioStore(engine, self.service)
        self.admin = raw.connect(engine.url)
        self.admin.autocommit = True
        self.created: list[str] = []

    def close(self) -> None:
        """Delete every portfolio the run created (positions cascade) and disconnect."""
        with self.admin.cursor() as cursor:
            cursor.execute("DELETE FROM portfolios WHERE id = ANY(%s::uuid[])", (self.created,))
        self.admin.close()

    # -- helpers ---------------------------------------------------------------

    def _portfolios(self, count: int) -> list[str]:
        ids = [str(self.store.create_portfolio(f"bench-{n}", OPENING_CASH)) for n in range(count)]
        self.created.extend(ids)
        return ids

    def _state(self, ids: Sequence[str]) -> tuple[int, Decimal]:
        with self.admin.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(version), 0), coalesce(sum(cash_balance), 0) "
                "FROM portfolios WHERE id = ANY(%s::uuid[])",
                (list(ids),),
            )
            versions, cash = raw.fetch_row(cursor)
        return int(versions), Decimal(cash)

    def _contend(self, contenders: Mapping[str, Contender]) -> dict[str, dict[str, Any]]:
        """Run the contenders in interleaved rounds; check each committed what it counted.

        A contender's portfolios must move by exactly its commits: versions by
        one each, cash by AMOUNT each. Anything else raises AssertionError.
        """
        before = {name: self._state(c.ids) for name, c in contenders.items()}
        samples: dict[str, list[Sample]] = {name: [] for name in contenders}
        for _ in range(self.sizes.rounds):
            for name, contender in contenders.items():
                samples[name].append(contender.run())
        reports: dict[str, dict[str, Any]] = {}
        for name, contender in contenders.items():
            stats = summarize(samples[name])
            versions, cash = self._state(contender.ids)
            report = stats.as_dict()
            report["verified"] = {
                "version_delta": versions - before[name][0],
                "cash_delta": str(cash - before[name][1]),
                "expected_cash_delta": str(AMOUNT * stats.commits),
            }
            if (versions - before[name][0], cash - before[name][1]) != (
                stats.commits,
                AMOUNT * stats.commits,
            ):
                raise AssertionError(f"{name}: committed work does not match the counts {report}")
            reports[name] = report
        return reports

    def _library(self, workers: int, ops: int, run: Callable[[int, int], object]) -> Sample:
        """Time ``run`` through the store; attempts = commits + failed attempts in the metrics."""
        before = self.service.get_metrics()

        def operation(worker: int, index: int) -> int:
            run(worker, index)
            return 1

        sample = run_workers(workers, ops, operation)
        after = self.service.get_metrics()
        failed = sum(after[name] - before[name] for name in _FAILED_ATTEMPT_METRICS)
        return sample.with_attempts(len(sample.latencies) + failed)

    @staticmethod
    def _deposit(portfolio: Portfolio) -> None:
        portfolio.deposit(AMOUNT)

    # -- (a) uncontended --------------------------------------------------------

    def uncontended(self, workers: int = 8, portfolio_count: int = 64) -> dict[str, Any]:
        """``workers`` threads, each on its own slice of ``portfolio_count`` portfolios."""
        per_round = max(1, self.sizes.uncontended_ops // self.sizes.rounds)
        per_worker = portfolio_count // workers
        conns, store, deposit = self.connections, self.store, self._deposit
        raw_ids = self._portfolios(portfolio_count)
        lib_ids = [UUID(pid) for pid in self._portfolios(portfolio_count)]

        def raw_op(worker: int, index: int) -> int:
            pid = raw_ids[worker * per_worker + index % per_worker]
            return raw.deposit_optimistic(conns[worker], pid, AMOUNT)

        def lib_op(worker: int, index: int) -> None:
            store.execute(lib_ids[worker * per_worker + index % per_worker], deposit)

        run_workers(workers, self.sizes.warmup_ops, raw_op)
        self._library(workers, self.sizes.warmup_ops, lib_op)
        reports = self._contend(
            {
                "raw": Contender(raw_ids, lambda: run_workers(workers, per_round, raw_op)),
                "library": Contender(
                    [str(pid) for pid in lib_ids],
                    lambda: self._library(workers, per_round, lib_op),
                ),
            }
        )
        ratio = round(reports["library"]["ops_per_s"] / reports["raw"]["ops_per_s"], 3)
        return {"workers": workers, "portfolios": portfolio_count, **reports, "ratio": ratio}

    # -- (b) one hot portfolio ------------------------------------------------------

    def hot(self, workers: int) -> dict[str, Any]:
        """``workers`` threads on ONE portfolio: raw FOR UPDATE, then each lock mode."""
        per_round = max(1, self.sizes.hot_ops // workers // self.sizes.rounds)
        conns, store, deposit = self.connections, self.store, self._deposit
        (raw_id,) = self._portfolios(1)

        def raw_op(worker: int, index: int) -> int:
            return raw.deposit_locked(conns[worker], raw_id, AMOUNT)

        run_workers(workers, self.sizes.warmup_ops, raw_op)
        contenders = {"raw": Contender([raw_id], lambda: run_workers(workers, per_round, raw_op))}
        for mode in LOCK_MODES:
            (text_id,) = self._portfolios(1)
            pid = UUID(text_id)

            def lib_op(worker: int, index: int, pid: UUID = pid, mode: Any = mode) -> None:
                store.execute(pid, deposit, lock=mode)

            self._library(workers, self.sizes.warmup_ops, lib_op)
            contenders[mode] = Contender(
                [text_id], partial(self._library, workers, per_round, lib_op)
            )
        return summarize_hot(workers, per_round * self.sizes.rounds, self._contend(contenders))

    # -- (c) re-pricing a big portfolio ------------------------------------------------

    def _big_portfolio(self, positions: int) -> str:
        (pid,) = self._portfolios(1)
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

    def _version(self, pid: str) -> int:
        with self.admin.cursor() as cursor:
            cursor.execute("SELECT version FROM portfolios WHERE id = %s", (pid,))
            return int(raw.fetch_row(cursor)[0])

    def reprice(self) -> dict[str, Any]:
        """update_all_prices on every position vs raw UPDATE ... FROM (VALUES ...)."""
        count, rounds = self.sizes.reprice_positions, self.sizes.reprice_rounds
        symbols = [f"S{n:06d}" for n in range(1, count + 1)]
        price_lists = [
            [(symbol, Decimal(f"{11 + r}.{n % 97:02d}")) for n, symbol in enumerate(symbols)]
            for r in range(rounds + 1)
        ]
        result: dict[str, Any] = {"positions": count, "rounds": rounds}
        conn = self.connections[0]
        raw_id, lib_id = self._big_portfolio(count), self._big_portfolio(count)
        store = self.store

        # What a caller would pass is built before any timing, for both.
        price_maps = [dict(prices) for prices in price_lists]
        lib_uuid = UUID(lib_id)
        contenders: dict[str, Callable[[int], int]] = {
            "raw": lambda r: raw.reprice(conn, raw_id, price_lists[r]),
            "library": lambda r: store.update_all_prices(lib_uuid, price_maps[r]),
        }
        for name, pid in (("raw", raw_id), ("library", lib_id)):
            call = contenders[name]
            call(rounds)  # warm-up (caches, compiled statements)
            latencies: list[float] = []
            bumps: list[int] = []
            cpu = 0.0
            for r in range(rounds):
                before = self._version(pid)
                started, cpu_started = time.perf_counter(), time.process_time()
                changed = call(r)
                latencies.append(time.perf_counter() - started)
                cpu += time.process_time() - cpu_started
                bumps.append(self._version(pid) - before)
                if changed != count:
                    raise AssertionError(f"{name} re-priced {changed} of {count} positions")
            if bumps != [1] * rounds:
                raise AssertionError(f"{name} bumped the version {bumps}, not once per call")
            report = summarize([Sample(1, latencies, rounds, sum(latencies), cpu)]).as_dict()
            report["version_bumps"] = bumps
            report["positions_repriced_per_call"] = count
            result[name] = report
        result["ratio"] = round(result["library"]["ops_per_s"] / result["raw"]["ops_per_s"], 3)
        return result
