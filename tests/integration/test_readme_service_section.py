"""The README's "Using it inside an existing service" code runs as written.

Its start-up, replica, idempotency-key, caller's-transaction, If-Match and
observability blocks run here, in order, against a database that starts empty
($PORTFOLIO_CORE_DATABASE_URL points at it, as the blocks expect). Its
two env.py blocks and its alembic.ini run in test_alembic_coexistence.py,
inside application alembic projects.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from portfolio_core.persistence.engine import DATABASE_URL_ENV
from tests.integration.app_alembic import fenced_blocks
from tests.integration.helpers import empty_database, table_names

ENV_PY = "# migrations/env.py"


@pytest.fixture
def empty_url(postgres_server_url: str) -> Iterator[str]:
    """A database with no tables at all."""
    with empty_database(postgres_server_url) as url:
        yield url


def test_the_section_has_its_runnable_blocks_and_both_env_py_files() -> None:
    blocks = fenced_blocks("python")

    assert len([b for b in blocks if not b.startswith(ENV_PY)]) == 8
    assert [b.splitlines()[0] for b in blocks if b.startswith(ENV_PY)] == [
        f"{ENV_PY}, way (a)",
        f"{ENV_PY}, way (b)",
    ]
    assert len(fenced_blocks("ini")) == 1


def test_the_section_python_blocks_run_in_order_on_an_empty_database(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, empty_url)
    runnable = [b for b in fenced_blocks("python") if not b.startswith(ENV_PY)]

    for number, block in enumerate(runnable, start=1):
        exec(compile(block, f"README service block {number}", "exec"), {})

    assert {"portfolios", "portfolio_core_alembic_version"} <= table_names(empty_url)
    assert "alembic_version" not in table_names(empty_url)
