"""Every ```python block of README.md runs as written and passes mypy --strict.

The conventions (one namespace and one fresh database per section, file
blocks and sections run by other tests) are in ``readme_blocks``' docstring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from mypy import api as mypy_api
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from portfolio_core.persistence.engine import DATABASE_URL_ENV
from tests.integration import readme_blocks
from tests.integration.helpers import empty_database, table_names
from tests.integration.readme_blocks import (
    FILE_BLOCKS,
    REPOSITORY,
    SECTIONS_RUN_ELSEWHERE,
    Block,
    python_blocks,
    section_blocks,
    sections_run_here,
)


@pytest.fixture
def section_database(request: pytest.FixtureRequest, postgres_server_url: str) -> Iterator[str]:
    """The section's own database: empty if its blocks migrate, else freshly migrated."""
    if readme_blocks.needs_empty_database(section_blocks(request.param)):
        with empty_database(postgres_server_url) as url:
            yield url
    else:
        yield request.getfixturevalue("database_url")


def _dispose_engines(namespace: dict[str, object]) -> None:
    for value in namespace.values():
        if isinstance(value, Engine):
            value.dispose()
        elif isinstance(value, AsyncEngine):
            asyncio.run(value.dispose())


@pytest.mark.parametrize(
    "section_database", sections_run_here(), indirect=True, ids=lambda title: title
)
def test_the_section_s_blocks_run_in_order(
    section_database: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    section = request.node.callspec.params["section_database"]
    blocks = section_blocks(section)
    monkeypatch.setenv(DATABASE_URL_ENV, section_database)

    namespace = readme_blocks.run_section(blocks)

    _dispose_engines(namespace)
    if readme_blocks.needs_empty_database(blocks):
        # migrate() made the tables (in the schema the section names, if any)
        # and never writes the application's alembic_version.
        schema = readme_blocks.schema_named(blocks)
        assert "portfolios" in table_names(section_database, schema)
        assert "alembic_version" not in table_names(section_database)


def test_every_python_block_is_run_by_some_test() -> None:
    blocks = python_blocks()
    files = [b.file_name for b in blocks if b.file_name is not None]
    sections = {b.section for b in blocks}
    here = set(sections_run_here())

    unowned = [b.label for b in blocks if b.file_name and b.file_name not in FILE_BLOCKS]
    assert not unowned, f"file blocks no test runs (list them in FILE_BLOCKS): {unowned}"
    assert sorted(FILE_BLOCKS) == sorted(files), "FILE_BLOCKS lists blocks the README lacks"
    assert set(SECTIONS_RUN_ELSEWHERE) <= sections, "SECTIONS_RUN_ELSEWHERE: no such section"
    for title, owner in {**FILE_BLOCKS, **SECTIONS_RUN_ELSEWHERE}.items():
        assert (REPOSITORY / owner).is_file(), f"{title!r}: {owner} does not exist"
    assert all(
        b.section in here or b.section in SECTIONS_RUN_ELSEWHERE or b.file_name for b in blocks
    )
    assert {"Using it", "asyncio", "Audit trail and exactly-once operations"} <= here


def test_the_parser_sees_sections_fences_and_file_blocks() -> None:
    text = (
        "## A\n```python\nx = 1\n```\n### B\n```sh\n## not a heading\n```\n"
        "```python\n# app/env.py\ny = 2\n```\n```python\nz = 3\n```\n"
    )

    blocks = python_blocks(text)

    assert [(b.section, b.line, b.code) for b in blocks] == [
        ("A", 2, "x = 1\n"),
        ("B", 9, "# app/env.py\ny = 2\n"),
        ("B", 13, "z = 3\n"),
    ]
    assert [b.file_name for b in blocks] == [None, "# app/env.py", None]


def _module_per_section(blocks: list[Block], folder: Path) -> list[str]:
    by_section: dict[str, list[str]] = {}
    for block in blocks:
        if block.file_name is None:
            by_section.setdefault(block.section, []).append(f"# {block.label}\n{block.code}")
    paths = []
    for number, codes in enumerate(by_section.values()):
        path = folder / f"readme_section_{number}.py"
        path.write_text("\n".join(codes))
        paths.append(str(path))
    return paths


def test_every_block_passes_mypy_strict(tmp_path: Path) -> None:
    paths = _module_per_section(python_blocks(), tmp_path)

    stdout, stderr, status = mypy_api.run(
        [
            "--strict",
            "--config-file",
            str(REPOSITORY / "pyproject.toml"),
            "--cache-dir",
            str(REPOSITORY / ".mypy_cache"),
            "--no-error-summary",
            *paths,
        ]
    )

    assert status == 0, stdout + stderr
