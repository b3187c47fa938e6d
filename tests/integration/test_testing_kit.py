"""The kit as a service uses it: pytest subprocesses loading the plugin on their own.

README's "Testing your service" examples, a run under pytest-xdist and an
interrupted run each go through a fresh pytest process in a temporary
folder (no conftest.py of this project around), sharing this session's server
through $PORTFOLIO_CORE_DATABASE_URL, except the interrupted run, which must
start and stop an embedded server of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from portfolio_core.persistence.engine import DATABASE_URL_ENV
from tests.integration.readme_blocks import section_blocks

REPOSITORY = Path(__file__).resolve().parents[2]

XDIST_MODULE = """
import os, pathlib
from sqlalchemy import text

def test_each_worker(engine, template_database):
    with engine.connect() as connection:
        database = connection.execute(text("SELECT current_database()")).scalar_one()
    worker = os.environ["PYTEST_XDIST_WORKER"]
    pathlib.Path(f"{worker}.txt").write_text(f"{template_database} {database}")
"""

INTERRUPTED_MODULE = """
import pathlib

def test_interrupted(postgres_server_url):
    pathlib.Path("server-url.txt").write_text(postgres_server_url)
    raise KeyboardInterrupt
"""


def pytest_run(
    folder: Path, *args: str, server_url: str | None, **variables: str
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest args`` in ``folder``, the plugin loaded by its entry point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", DATABASE_URL_ENV))}
    env.update(variables)
    if server_url is not None:
        env[DATABASE_URL_ENV] = server_url
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_readme_testing_examples_pass_as_a_service_would_run_them(
    tmp_path: Path, postgres_server_url: str
) -> None:
    blocks = section_blocks("Testing your service")  # readme_blocks.SECTIONS_RUN_ELSEWHERE
    assert len(blocks) == 3
    for index, block in enumerate(blocks):
        (tmp_path / f"test_readme_{index}.py").write_text(block.code)

    result = pytest_run(tmp_path, server_url=postgres_server_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b3 passed\b", result.stdout), result.stdout


def test_each_xdist_worker_gets_its_own_template_and_databases(
    tmp_path: Path, postgres_server_url: str
) -> None:
    (tmp_path / "test_workers.py").write_text(XDIST_MODULE)

    # --dist each: the one test runs on both workers.
    result = pytest_run(tmp_path, "-n", "2", "--dist", "each", server_url=postgres_server_url)

    assert result.returncode == 0, result.stdout + result.stderr
    seen = {path.stem: path.read_text().split() for path in tmp_path.glob("gw*.txt")}
    assert sorted(seen) == ["gw0", "gw1"]
    assert seen["gw0"][0] != seen["gw1"][0]
    assert seen["gw0"][1] != seen["gw1"][1]
    for worker, (template, database) in seen.items():
        assert f"_{worker}_" in template
        assert f"_{worker}_" in database


def test_an_interrupted_run_stops_its_embedded_server(tmp_path: Path) -> None:
    (tmp_path / "test_interrupted.py").write_text(INTERRUPTED_MODULE)

    result = pytest_run(tmp_path, server_url=None)

    assert "KeyboardInterrupt" in result.stdout + result.stderr
    url = (tmp_path / "server-url.txt").read_text()
    port = int(re.findall(r":(\d+)/", url)[0])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the server still listens"


EXAMPLE = REPOSITORY / "examples" / "test_concentration_limit.py"
INVARIANTS = ("money_is", "no_symbol", "replay_equals", "stored_matches", "versions_equal")


def test_the_service_example_passes(tmp_path: Path, postgres_server_url: str) -> None:
    shutil.copy(EXAMPLE, tmp_path)

    result = pytest_run(tmp_path, server_url=postgres_server_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_example_s_broken_rule_is_found_and_shrunk(
    tmp_path: Path, postgres_server_url: str
) -> None:
    shutil.copy(EXAMPLE, tmp_path)

    result = pytest_run(
        tmp_path,
        "-k",
        "sequence",
        # A fixed seed keeps CI deterministic; other seeds find it as well.
        "--hypothesis-seed=1",
        server_url=postgres_server_url,
        BREAK_CONCENTRATION_RULE="1",
    )

    output = result.stdout
    assert result.returncode == 1, output + result.stderr
    assert "assert concentration_holds(portfolio)" in output
    assert "AssertionError: {'AAA'" in output or "AssertionError: {'" in output
    # The shrunk reproduction: the steps between "state = ..." and teardown,
    # invariant checks left out: a portfolio and two orders sized by the
    # broken service (sometimes a deposit first, when the portfolio opens empty).
    steps = [
        line
        for line in output.splitlines()
        if re.match(r"E\s+(\w+ = )?state\.", line)
        and not any(f"state.{name}" in line for name in (*INVARIANTS, "teardown"))
    ]
    assert 2 <= len(steps) <= 5, output
