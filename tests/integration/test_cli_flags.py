"""The command's smaller flags: migrate's no-op line and --json, db --port, demo --json -."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from portfolio_core.cli import main
from portfolio_core.migrations import head_revision
from tests.integration.helpers import empty_database
from tests.integration.test_cli import _command, _environment, _read_until, _tables

FIRST_REVISION = "pc0001_portfolios"


@pytest.fixture
def empty_url(postgres_server_url: str) -> Iterator[str]:
    """A database with no tables at all."""
    with empty_database(postgres_server_url) as url:
        yield url


def test_a_migrate_that_changes_nothing_says_already_at(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--url", database_url]) == 0

    out = capsys.readouterr().out.strip()
    assert out.endswith(f": already at {head_revision()}")
    assert "->" not in out


def test_migrate_json_reports_each_step_as_one_object(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes = []
    for revision in ("head", "head", FIRST_REVISION):
        assert main(["migrate", "--url", empty_url, "--revision", revision, "--json"]) == 0
        outcomes.append(json.loads(capsys.readouterr().out))

    head = head_revision()
    assert [(o["action"], o["from"], o["to"]) for o in outcomes] == [
        ("upgraded", None, head),
        ("unchanged", head, head),
        ("downgraded", head, FIRST_REVISION) if head != FIRST_REVISION else ("unchanged",) * 3,
    ]
    assert all(o["granted_role"] is None and "***" in o["url"] for o in outcomes)


def test_migrate_json_does_not_go_with_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--sql", "--json"]) == 2
    assert "--json reports a migration" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(120)
def test_db_listens_on_the_port_asked_for() -> None:
    port = _free_port()
    db = subprocess.Popen(
        _command("db", "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(),
    )
    try:
        assert db.stdout is not None
        lines = _read_until(db.stdout, "Ctrl-C stops it")
        url = next(line.split(" at ", 1)[1] for line in lines if "ready at" in line)
        assert f"@127.0.0.1:{port}/" in url
        assert "portfolios" in _tables(url)
        db.send_signal(signal.SIGTERM)
        db.communicate(timeout=60)
    finally:
        if db.poll() is None:
            db.kill()
    assert db.returncode == 0


@pytest.mark.timeout(180)
def test_demo_json_dash_writes_the_report_to_stdout_alone(
    database_url: str, tmp_path: Path
) -> None:
    arguments = ["--url", database_url, "--ops", "40", "--workers", "2", "--processes", "1"]
    completed = subprocess.run(
        _command("demo", *arguments, "--portfolios", "2", "--json", "-"),
        capture_output=True,
        text=True,
        env=_environment(),
        cwd=tmp_path,
        timeout=170,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)  # nothing else on stdout
    assert report["all_invariants_hold"] is True
    assert "ALL INVARIANTS HOLD" in completed.stderr
    assert list(tmp_path.iterdir()) == []  # no file named "-"
    assert not re.search(r"\dE[-+]\d", completed.stdout), "a Decimal in exponent notation"
