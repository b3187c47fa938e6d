"""The built wheel carries the migration scripts and migrates a database on its own.

The wheel is built from a copy of the checkout, installed into a fresh
virtualenv, and run from a directory outside the checkout with a clean
PYTHONPATH, so nothing but the installed package can be imported.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import empty_database, table_names
from tests.integration.venvs import new_venv, run

REPOSITORY = Path(__file__).resolve().parents[2]
# The `wheel` fixture (built once per session, shared with the testing kit's
# wheel test) is in tests/conftest.py.
CHECK_INSTALLED = """
import json, sys
import portfolio_core
from alembic.util import coerce_resource_to_filename
from portfolio_core.migrations import VERSIONS_RESOURCE, script_location
portfolio_core.migrate(sys.argv[1])
print(json.dumps({
    "file": portfolio_core.__file__,
    "scripts": str(script_location()),
    "versions_resource": str(coerce_resource_to_filename(VERSIONS_RESOURCE)),
    "path": sys.path,
    "version": portfolio_core.__version__,
}))
"""


@pytest.fixture
def empty_url(postgres_server_url: str) -> Iterator[str]:
    """A database with no tables, not copied from the migrated template."""
    with empty_database(postgres_server_url) as url:
        yield url


def test_wheel_contains_the_migration_scripts_and_py_typed(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())

    assert "portfolio_core/py.typed" in names
    assert "portfolio_core/_alembic/env.py" in names
    assert "portfolio_core/_alembic/script.py.mako" in names
    assert any(
        n.startswith("portfolio_core/_alembic/versions/pc0001") and n.endswith(".py") for n in names
    )
    assert not any(n.startswith(("tests/", "alembic/")) for n in names)


def test_installed_wheel_migrates_a_fresh_database_without_the_checkout(
    wheel: Path, empty_url: str, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    python = new_venv(venv, str(wheel))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PORTFOLIO_CORE"))}

    output = run(python, "-c", CHECK_INSTALLED, empty_url, cwd=tmp_path, env=env)

    report = json.loads(output.strip().splitlines()[-1])
    site = venv.resolve()
    assert Path(report["file"]).resolve().is_relative_to(site)
    assert Path(report["scripts"]).resolve().is_relative_to(site)
    assert Path(report["scripts"]).name == "_alembic"
    # What an application lists in its version_locations (README, way (b)).
    assert Path(report["versions_resource"]) == Path(report["scripts"]) / "versions"
    assert not any(
        p and Path(p).resolve().is_relative_to(REPOSITORY) for p in report["path"] if p != ""
    )
    assert table_names(empty_url) >= {"portfolios", "positions", "portfolio_core_alembic_version"}
