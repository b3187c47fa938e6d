"""The ``portfolio-core`` command end to end: migrate, db, demo (with faults, and Ctrl-C).

The demo and db commands run as subprocesses with their own embedded
PostgreSQL, so that what they leave behind (a server process, a temporary
folder) can be checked after they exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import make_url

from portfolio_core.cli import main
from portfolio_core.migrations import head_revision
from portfolio_core.persistence.engine import create_engine

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"
FIRST_REVISION = "pc0001_portfolios"
DATA_DIR = re.compile(r"data dir (\S+?)\)?$")


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "portfolio_core.cli", *args]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _processes_using(data_dir: Path) -> list[psutil.Process]:
    """Processes whose command line names ``data_dir`` (a postmaster's -D)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command_line = process.info["cmdline"] or []
        if any(str(data_dir) in part for part in command_line):
            found.append(process)
    return found


def _read_until(stream: IO[str], marker: str) -> list[str]:
    lines: list[str] = []
    for line in stream:
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never printed; got {lines}")


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def _data_dir(lines: list[str]) -> Path:
    for line in lines:
        match = DATA_DIR.search(line)
        if match:
            return Path(match.group(1))
    raise AssertionError(f"no data dir in {lines}")


def _assert_one_line_error(capsys: pytest.CaptureFixture[str], expected: str) -> None:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert expected in err


@pytest.fixture
def empty_database_url(postgres_server_url: str) -> Iterator[str]:
    """A brand-new database with no tables at all."""
    name = f"pc_cli_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url, pool_size=1)
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrate_upgrades_a_fresh_database_and_downgrades_to_base(
    empty_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--url", empty_database_url]) == 0
    assert "upgraded" in capsys.readouterr().out
    assert {"portfolios", "positions", "portfolio_core_alembic_version"} <= _tables(
        empty_database_url
    )

    assert main(["migrate", "--url", empty_database_url, "--revision", FIRST_REVISION]) == 0
    out = capsys.readouterr().out
    assert ("downgraded" in out) == (head_revision() != FIRST_REVISION)
    assert out.rstrip().endswith(f"-> {FIRST_REVISION}")
    assert "portfolios" in _tables(empty_database_url)

    assert main(["migrate", "--url", empty_database_url, "--revision", "base"]) == 0
    assert "downgraded" in capsys.readouterr().out
    assert not {"portfolios", "positions"} & _tables(empty_database_url)

    assert main(["migrate", "--url", empty_database_url]) == 0
    assert "portfolios" in _tables(empty_database_url)


def test_migrate_grants_the_app_role_exactly_the_store_privileges(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    role = f"pc_cli_app_{uuid.uuid4().hex[:10]}"
    owner = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with owner.begin() as connection:
            connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'x'"))
        try:
            assert main(["migrate", "--url", database_url, "--grant-app-role", role]) == 0
            assert role in capsys.readouterr().out
            with owner.connect() as connection:
                granted = set(
                    connection.execute(
                        text(
                            "SELECT table_name, privilege_type FROM "
                            "information_schema.role_table_grants WHERE grantee = :r"
                        ),
                        {"r": role},
                    ).all()
                )
        finally:
            with owner.begin() as connection:
                connection.execute(text(f"DROP OWNED BY {role}"))
                connection.execute(text(f"DROP ROLE {role}"))
    finally:
        owner.dispose()

    assert {privilege for table, privilege in granted if table == "portfolio_events"} == {
        "SELECT",
        "INSERT",
    }
    assert ("portfolios", "DELETE") not in granted
    assert ("idempotency_keys", "DELETE") in granted


@pytest.mark.parametrize("command", ["migrate", "demo"])
def test_an_unreachable_server_is_one_line_and_exit_2(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--url", UNREACHABLE]) == 2
    _assert_one_line_error(capsys, "cannot use the database")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("coalesce", [False, True])
def test_short_demo_with_faults_keeps_every_invariant_and_leaves_nothing_behind(
    tmp_path: Path, coalesce: bool
) -> None:
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        _command(
            "demo",
            "--ops",
            "300",
            "--faults",
            "--workers",
            "4",
            "--processes",
            "2",
            "--portfolios",
            "4",
            "--seed",
            "7",
            "--json",
            str(report_path),
            *(["--coalesce"] if coalesce else []),
        ),
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=170,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    report = json.loads(report_path.read_text())
    assert report["all_invariants_hold"] is True
    names = {check["name"] for check in report["invariants"] if check["holds"]}
    assert {
        "money conserved per portfolio",
        "money conserved in total",
        "no negative cash",
        "no NaN",
        "versions == committed changes",
        "external flows reconcile (transfers cancel out)",
        "no unexpected errors",
    } <= names
    assert "versions == events" in names
    assert report["features"]["idempotency_keys"] is True
    assert report["features"]["coalesce"] is coalesce
    assert "every keyed op applied exactly once" in names
    assert all(check["holds"] for check in report["invariants"])
    assert report["operations"]["finished"] == 300
    assert report["faults"]["server_restarts"] == 1
    assert report["faults"]["backends_terminated"] >= 3
    data_dir = _data_dir(completed.stdout.splitlines())
    assert not data_dir.exists()
    assert _processes_using(data_dir) == []


@pytest.mark.timeout(240)
def test_ctrl_c_stops_the_demo_its_server_and_removes_its_folder() -> None:
    demo = subprocess.Popen(
        _command("demo", "--duration", "120", "--faults", "--workers", "2", "--processes", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_environment(), "PYTHONFAULTHANDLER": "1"},
    )
    children: list[psutil.Process] = []
    try:
        assert demo.stdout is not None
        lines = _read_until(demo.stdout, "processes started")
        data_dir = _data_dir(lines)
        assert data_dir.exists()
        children = psutil.Process(demo.pid).children(recursive=True)

        demo.send_signal(signal.SIGINT)
        try:
            _, err = demo.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            demo.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            _, err = demo.communicate(timeout=30)
            _kill(children)  # never leave a worker behind
            pytest.fail(f"the demo still ran 90 s after Ctrl-C; its stacks:\n{err[-8000:]}")
    finally:
        if demo.poll() is None:
            demo.kill()
            _kill(children)

    assert demo.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert not data_dir.exists()
    assert _processes_using(data_dir) == []
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []


@pytest.mark.timeout(120)
def test_db_serves_a_migrated_database_until_sigterm_then_removes_its_folder() -> None:
    db = subprocess.Popen(
        _command("db"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_environment(),
    )  # fmt: skip
    try:
        assert db.stdout is not None
        lines = _read_until(db.stdout, "Ctrl-C stops it")
        url = next(line.split(" at ", 1)[1] for line in lines if "ready at" in line)
        data_dir = Path(next(line for line in lines if line.startswith("data dir")).split()[2])
        assert "portfolios" in _tables(url)

        db.send_signal(signal.SIGTERM)
        out, err = db.communicate(timeout=60)
    finally:
        if db.poll() is None:
            db.kill()

    assert db.returncode == 0, err
    assert "stopped" in out
    assert not data_dir.exists()
    assert _processes_using(data_dir) == []


@pytest.mark.timeout(180)
def test_the_demo_worker_processes_exit_when_the_demo_is_killed() -> None:
    demo = subprocess.Popen(
        _command("demo", "--duration", "120", "--workers", "2", "--processes", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_environment(),
    )
    data_dir: Path | None = None
    workers: list[psutil.Process] = []
    try:
        assert demo.stdout is not None
        data_dir = _data_dir(_read_until(demo.stdout, "processes started"))
        workers = [
            child
            for child in psutil.Process(demo.pid).children(recursive=True)
            if "spawn_main" in " ".join(child.cmdline())
        ]
        assert len(workers) == 2

        demo.kill()  # no Ctrl-C, no cleanup: nobody will ever tell the workers to stop
        demo.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
        _kill(workers)
        if data_dir is not None:  # the killed demo could not stop its server
            _kill(_processes_using(data_dir))
            shutil.rmtree(data_dir, ignore_errors=True)

    assert alive == [], "worker processes outlived the demo"
