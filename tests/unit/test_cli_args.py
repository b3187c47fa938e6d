"""The CLI's argument handling and error messages: no database involved."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from portfolio_core.cli import main
from portfolio_core.persistence.engine import DATABASE_URL_ENV


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert lines[0].startswith("portfolio-core")
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["demo", "--workers", "0"], "--workers: must be at least 1"),
        (["demo", "--workers", "many"], "--workers: expected a whole number"),
        (["demo", "--duration", "-3"], "--duration: must be a positive number"),
        (["demo", "--duration", "nan"], "--duration: must be a positive number"),
        (["demo", "--duration", "5", "--ops", "10"], "not allowed with argument"),
        (["demo", "--hot-share", "1.5"], "--hot-share: must be between 0 and 1"),
        (["demo", "--seed", "x"], "--seed: invalid int value"),
        (["migrate", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_print_one_line_and_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
    assert expected in _one_line_error(capsys)


def test_demo_with_more_processes_than_workers_is_refused_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--workers", "2", "--processes", "3", "--url", "postgresql://h/x"]) == 2
    assert "processes" in _one_line_error(capsys)


def test_demo_json_into_a_missing_folder_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "report.json"

    assert main(["demo", "--json", str(target)]) == 2
    assert "--json: no such folder" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://user@localhost/db", "needs PostgreSQL"),
        ("not a url", "not a database URL"),
        ("postgresql://u:p@h:notaport/db", "not a database URL"),
    ],
)
def test_bad_url_prints_one_line_and_exits_2(
    url: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--url", url]) == 2
    assert expected in _one_line_error(capsys)


def test_migrate_without_any_url_names_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)

    assert main(["migrate"]) == 2
    assert DATABASE_URL_ENV in _one_line_error(capsys)


def test_migrate_sql_prints_the_schema_without_a_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)

    assert main(["migrate", "--sql"]) == 0

    sql = capsys.readouterr().out
    assert "CREATE TABLE portfolios" in sql
    assert "CREATE TABLE positions" in sql
    assert "alembic_version" in sql


def test_migrate_sql_to_an_unknown_revision_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["migrate", "--sql", "--revision", "nope"]) == 2
    assert "nope" in _one_line_error(capsys)


def test_bench_without_the_benchmark_module_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes the import fail as if the module were absent.
    monkeypatch.setitem(sys.modules, "portfolio_core.bench", None)

    assert main(["bench", "--anything"]) == 2
    assert "benchmark is not part of this installation" in _one_line_error(capsys)


def test_bench_passes_every_argument_to_the_benchmark_and_returns_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[Sequence[str] | None] = []

    def fake_main(argv: Sequence[str] | None) -> int:
        received.append(argv)
        return 3

    module = types.ModuleType("portfolio_core.bench")
    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "portfolio_core.bench", module)

    assert main(["bench", "--help", "--threads", "4"]) == 3
    assert received == [["--help", "--threads", "4"]]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("migrate", "db", "demo", "bench"):
        assert command in out


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from portfolio_core import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"portfolio-core {__version__}"


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_db_refuses_a_port_that_is_no_tcp_port(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["db", "--port", port])

    assert exit_info.value.code == 2
    assert "--port" in _one_line_error(capsys)
