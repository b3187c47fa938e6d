"""Runs the demo: a database, portfolios, worker processes, faults, progress, report.

Everything started here is stopped here, in reverse order, whatever happens
(an ExitStack): worker processes first, then the fault injector, engines,
and the embedded server, whose temporary folder is removed (also on Ctrl-C).
Worker processes also end by themselves if this process dies.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from types import FrameType
from typing import Any, Final
from uuid import UUID

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from portfolio_core.demo.config import APPLICATION_NAME_PREFIX, DemoConfig
from portfolio_core.demo.faults import FaultInjector
from portfolio_core.demo.invariants import check_invariants
from portfolio_core.demo.report import build_report
from portfolio_core.demo.stats import WorkerStats
from portfolio_core.demo.workload import child_main
from portfolio_core.errors import PortfolioCoreError
from portfolio_core.migrations import migrate
from portfolio_core.persistence.engine import create_engine
from portfolio_core.store import PortfolioStore
from portfolio_core.units import Ratio, Seconds

RESTART_AT: Final[Ratio] = 0.4
"""The embedded server restarts once this share of the run is behind."""
GATE_AT: Final[Ratio] = 0.6
"""In an --ops run with faults, trades past this share wait for the restart."""
INTERRUPTS: Final = (signal.SIGINT, signal.SIGTERM)
"""What stops the run early (the command line turns them into exit status 130)."""


class DemoFailedError(PortfolioCoreError):
    """A worker process crashed (its traceback is the message)."""


def _stop_processes(processes: Sequence[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def _progress_bar(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn(
            "committed [green]{task.fields[committed]}[/]  "
            "conflicts [yellow]{task.fields[conflicts]}[/]  "
            "retries [magenta]{task.fields[retries]}[/]"
        ),
        console=console,
        transient=False,
    )


@contextmanager
def _interrupts_as_flag() -> Iterator[threading.Event]:
    """While the workers run, Ctrl-C and SIGTERM set a flag the loop checks.

    Raised asynchronously, the KeyboardInterrupt could land inside rich's or
    multiprocessing's internals (and, say, leave a lock held that the cleanup
    then waits for); the loop raises it itself between two reads of the queue,
    which return within a tenth of a second. Only the main thread can take
    signals: elsewhere the flag stays unset and nothing changes.
    """
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def handler(number: int, frame: FrameType | None) -> None:
        interrupted.set()

    previous = {number: signal.signal(number, handler) for number in INTERRUPTS}
    try:
        yield interrupted
    finally:
        for number, old in previous.items():
            if old is not None:  # None: a handler not set from Python, nothing to restore
                signal.signal(number, old)


class _Collector:
    """Reads the children's messages: live counts, then each one's final stats."""

    def __init__(self, processes: int) -> None:
        self.counts: dict[int, dict[str, int]] = {}
        self.finished: dict[int, WorkerStats] = {}
        self.processes = processes

    def total(self, name: str) -> int:
        return sum(c.get(name, 0) for c in self.counts.values())

    def handle(self, message: tuple[str, int, Any]) -> None:
        kind, index, payload = message
        if kind == "progress":
            self.counts[index] = payload
        elif kind == "done":
            self.finished[index] = payload
        else:
            raise DemoFailedError(f"demo process {index} failed:\n{payload}")

    @property
    def complete(self) -> bool:
        return len(self.finished) == self.processes


def _run_workers(
    stack: ExitStack,
    config: DemoConfig,
    url: str,
    portfolio_ids: list[UUID],
    keyed: bool,
    console: Console,
    start_faults: Callable[[str, Callable[[], bool], Any], None],
    owns_server: bool,
    announce: Callable[[str], None],
) -> tuple[WorkerStats, Seconds]:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    claimed = context.Value("q", 0) if config.ops is not None else None
    messages = context.Queue()
    restarted = context.Event()
    gate = None
    if config.faults and owns_server and config.ops is not None:
        gate = int(config.ops * GATE_AT)
    application_name = f"{APPLICATION_NAME_PREFIX}-{uuid.uuid4().hex[:8]}"
    processes = [
        context.Process(
            target=child_main,
            args=(
                i,
                config,
                url,
                application_name,
                [str(p) for p in portfolio_ids],
                keyed,
                stop,
                claimed,
                restarted,
                gate,
                messages,
            ),
            name=f"demo-process-{i}",
            daemon=True,
        )
        for i in range(config.processes)
    ]
    collector = _Collector(config.processes)
    started = time.monotonic()

    def share_done() -> Ratio:
        if config.duration is not None:
            return (time.monotonic() - started) / config.duration
        return collector.total("done") / (config.ops or 1)

    # The injector first, so that unwinding the stack (Ctrl-C included) stops
    # the workers before anything else: nothing else can delay their stop.
    start_faults(application_name, lambda: share_done() >= RESTART_AT, restarted)
    stack.callback(_stop_processes, processes)
    for process in processes:
        process.start()
    announce(f"demo: {config.workers} workers in {config.processes} processes started")
    total = config.ops if config.ops is not None else config.duration
    with _interrupts_as_flag() as interrupted, _progress_bar(console) as progress:
        task = progress.add_task("trading", total=total, committed=0, conflicts=0, retries=0)
        while not collector.complete:
            if interrupted.is_set():
                raise KeyboardInterrupt
            try:
                collector.handle(messages.get(timeout=0.1))
            except queue_module.Empty:
                dead = [p for i, p in enumerate(processes)
                        if p.exitcode is not None and i not in collector.finished]  # fmt: skip
                if dead:
                    raise DemoFailedError(
                        f"{dead[0].name} exited with {dead[0].exitcode}"
                    ) from None
            if config.duration is not None and share_done() >= 1:
                stop.set()
            done = time.monotonic() - started if config.duration else collector.total("done")
            progress.update(
                task,
                completed=min(done, total or 0),
                committed=collector.total("committed"),
                conflicts=collector.total("conflicts"),
                retries=collector.total("retries"),
            )
    elapsed = time.monotonic() - started
    for process in processes:
        process.join(timeout=30)
    merged = WorkerStats()
    for index in sorted(collector.finished):
        merged.merge(collector.finished[index])
    return merged, elapsed


def run_demo(
    config: DemoConfig, console: Console, announce: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the demo described by ``config``; return the report (see build_report).

    ``announce`` receives one line as soon as the database is ready (the
    URL, and the data folder of an embedded server).
    """
    with ExitStack() as stack:
        server = None
        if config.url is None:
            from portfolio_core.embedded import EmbeddedPostgres

            server = EmbeddedPostgres()
            stack.callback(server.stop)
            url = server.start()
            database = "embedded PostgreSQL"
            shown = make_url(url).render_as_string(hide_password=True)  # password never shown
            announce(f"demo: embedded PostgreSQL at {shown} (data dir {server.data_dir})")
        else:
            url = config.url
            database = "PostgreSQL at " + make_url(url).render_as_string(hide_password=True)
            announce(f"demo: {database}")
        migrate(url)
        engine = create_engine(url, pool_size=2, max_overflow=0, pool_pre_ping=True)
        stack.callback(engine.dispose)
        store = PortfolioStore(engine)
        portfolio_ids = [
            store.create_portfolio(f"demo-{i}", config.initial_cash)
            for i in range(config.portfolios)
        ]
        injector: list[FaultInjector] = []

        def start_faults(
            application_name: str, restart_due: Callable[[], bool], restarted: Any
        ) -> None:
            if not config.faults:
                return
            faults = FaultInjector(
                url,
                application_name,
                server=server,
                restart_due=restart_due,
                seed=config.seed,
                restarted=restarted,
            )
            stack.callback(faults.stop)
            injector.append(faults)
            faults.start()

        stats, elapsed = _run_workers(
            stack,
            config,
            url,
            portfolio_ids,
            config.use_keys,
            console,
            start_faults,
            server is not None,
            announce,
        )
        for faults in injector:
            faults.stop()
        engine.dispose()  # connections from before a restart are dead
        checks = check_invariants(
            engine,
            portfolio_ids,
            stats.ledger,
            stats.keys if config.use_keys else None,
            stats.unexpected,
        )
        return build_report(
            config,
            stats,
            checks,
            elapsed=elapsed,
            faults=injector[0].counts if injector else None,
            database=database,
        )
