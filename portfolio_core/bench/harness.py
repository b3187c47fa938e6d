"""Timing harness: N workers, a fixed number of operations each, latencies and attempts.

Two runners, one contract: :func:`run_workers` runs the workers as threads,
:func:`run_tasks` as asyncio tasks on the running loop. Every worker waits at
a start line, then runs its share of operations back to back; the wall time
runs from the start to the last worker's finish. An operation returns how many
attempts it took (1 when it committed first time), so "attempts per commit" is
measured, not guessed. Contenders run in interleaved rounds (raw, library,
raw, library...; see ``scenarios``) so that a shared machine's load drifting
during the run hits both alike.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from portfolio_core.units import Microseconds, Milliseconds, PerSecond, Ratio, Seconds

Operation = Callable[[int, int], int]
"""``operation(worker, index) -> attempts``: one committed operation (threads)."""

AsyncOperation = Callable[[int, int], Awaitable[int]]
"""``await operation(task, index) -> attempts``: one committed operation (asyncio)."""


@dataclass(frozen=True)
class Sample:
    """One timed run: every operation's latency (seconds), attempts and the wall time."""

    workers: int
    latencies: list[Seconds]
    attempts: int
    seconds: Seconds
    cpu_seconds: Seconds
    """This process's CPU time (all threads) during the run."""

    def with_attempts(self, attempts: int) -> Sample:
        """The same run with its attempts counted some other way (e.g. from metrics)."""
        return replace(self, attempts=attempts)


@dataclass(frozen=True)
class Stats:
    """What the runs of one contender measured, merged (rounds are interleaved)."""

    workers: int
    commits: int
    attempts: int
    seconds: Seconds
    ops_per_s: PerSecond
    p50_ms: Milliseconds
    p99_ms: Milliseconds
    rounds_ops_per_s: tuple[PerSecond, ...]
    """Each round's rate, to show the spread."""
    cpu_us_per_op: Microseconds
    """Client CPU per commit: robust to other load on the box."""

    @property
    def attempts_per_commit(self) -> Ratio:
        """Attempts (first tries plus retries) per committed operation."""
        return self.attempts / self.commits if self.commits else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Every field plus attempts_per_commit, for the JSON report."""
        return {
            **asdict(self),
            "rounds_ops_per_s": list(self.rounds_ops_per_s),
            "attempts_per_commit": round(self.attempts_per_commit, 4),
        }


def percentile(values: list[Seconds], fraction: Ratio) -> Seconds:
    """The ``fraction`` quantile (0..1) of ``values`` by the inclusive method (0 if empty)."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    index = min(98, max(0, round(fraction * 100) - 1))
    return cuts[index]


def _rate(count: int, seconds: Seconds) -> PerSecond:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def summarize(samples: Sequence[Sample]) -> Stats:
    """Merge the rounds of one contender: total commits over total time, pooled latencies."""
    ordered = sorted(latency for sample in samples for latency in sample.latencies)
    seconds = sum(sample.seconds for sample in samples)
    return Stats(
        workers=samples[0].workers,
        commits=len(ordered),
        attempts=sum(sample.attempts for sample in samples),
        seconds=round(seconds, 4),
        ops_per_s=_rate(len(ordered), seconds),
        p50_ms=round(percentile(ordered, 0.50) * 1000, 3),
        p99_ms=round(percentile(ordered, 0.99) * 1000, 3),
        rounds_ops_per_s=tuple(_rate(len(s.latencies), s.seconds) for s in samples),
        cpu_us_per_op=round(
            sum(s.cpu_seconds for s in samples) / len(ordered) * 1e6 if ordered else 0.0, 1
        ),
    )


def run_workers(workers: int, ops_per_worker: int, operation: Operation) -> Sample:
    """Run ``operation`` ``ops_per_worker`` times in each of ``workers`` threads; time it."""
    barrier = threading.Barrier(workers + 1)
    latencies: list[list[Seconds]] = [[] for _ in range(workers)]
    attempts = [0] * workers
    errors: list[BaseException] = []
    finished: list[Seconds] = [0.0] * workers

    def worker(number: int) -> None:
        barrier.wait()
        own = latencies[number]
        try:
            for index in range(ops_per_worker):
                started = time.perf_counter()
                attempts[number] += operation(number, index)
                own.append(time.perf_counter() - started)
        except BaseException as error:  # reported by the caller, never swallowed
            errors.append(error)
        finished[number] = time.perf_counter()

    threads = [
        threading.Thread(target=worker, args=(n,), name=f"bench-{n}") for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu
    if errors:
        raise errors[0]
    every = [latency for own in latencies for latency in own]
    return Sample(workers, every, sum(attempts), max(finished) - started, cpu)


async def run_tasks(workers: int, ops_per_worker: int, operation: AsyncOperation) -> Sample:
    """Run ``operation`` ``ops_per_worker`` times in each of ``workers`` tasks; time it."""
    go = asyncio.Event()
    latencies: list[Seconds] = []
    attempts = [0] * workers

    async def worker(number: int) -> None:
        await go.wait()
        for index in range(ops_per_worker):
            started = time.perf_counter()
            attempts[number] += await operation(number, index)
            latencies.append(time.perf_counter() - started)

    tasks = [asyncio.create_task(worker(n)) for n in range(workers)]
    await asyncio.sleep(0)  # let every task reach the start line
    started, cpu = time.perf_counter(), time.process_time()
    go.set()
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # Cancel and await the others: left pending, their transactions would
        # hold row locks that the cleanup's DELETE then waits on forever.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Sample(workers, latencies, sum(attempts), seconds, cpu)
