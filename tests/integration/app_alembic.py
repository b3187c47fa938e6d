"""An application's own alembic project, built in a temporary folder, and the README's
"Using it inside an existing service" section it takes its env.py files from.

The application ``myapp`` has two tables (``users``, ``orders``) in two
revisions whose ids are either alembic's hex ids or ``0001``/``0002``, the
ids the library itself used before it had a branch of its own.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from sqlalchemy import text

from portfolio_core import create_engine
from portfolio_core.migrations import VERSIONS_RESOURCE, script_location, versions_location
from portfolio_core.persistence.engine import resolve_url

REPOSITORY = Path(__file__).resolve().parents[2]
SECTION_TITLE = "## Using it inside an existing service"
APP_TABLES = frozenset({"users", "orders"})
LIBRARY_TABLES = frozenset({"portfolios", "positions", "portfolio_events", "idempotency_keys"})
REVISION_IDS = {"hex": ("a1b2c3d4e5f6", "0f9e8d7c6b5a"), "0001": ("0001", "0002")}

_MODELS = """
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table

metadata = MetaData()
users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(200), nullable=False),
)
orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
)
"""

_FIRST = """
import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("users")
"""

_SECOND = """
import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("orders")
"""

# Way (a): the application's alembic.ini knows nothing of the library.
_PLAIN_INI = """[alembic]
script_location = %(here)s/migrations
prepend_sys_path = .
path_separator = space
"""


def service_section() -> str:
    """The README's section on using the library inside an existing service."""
    readme = (REPOSITORY / "README.md").read_text()
    start = readme.index(SECTION_TITLE)
    end = readme.find("\n## ", start + len(SECTION_TITLE))
    return readme[start : end if end != -1 else len(readme)]


def fenced_blocks(language: str) -> list[str]:
    """The section's code blocks of ``language``, in order."""
    return re.findall(rf"```{language}\n(.*?)```", service_section(), flags=re.DOTALL)


def env_py(way: str) -> str:
    """The README's env.py for way ``"a"`` or ``"b"``."""
    [block] = [
        b for b in fenced_blocks("python") if b.startswith(f"# migrations/env.py, way ({way})")
    ]
    return block


def way_b_ini() -> str:
    """The README's alembic.ini for way (b), pointed at this checkout's scripts.

    An editable install has no ``portfolio_core/_alembic`` folder (the scripts
    stay in the checkout's ``alembic/``), so the package resource is replaced
    by the folder it names in a wheel; tests/integration/test_wheel.py checks
    that the resource resolves there in an installed wheel.
    """
    [block] = fenced_blocks("ini")
    if VERSIONS_RESOURCE not in block:
        raise AssertionError(f"the README's alembic.ini does not list {VERSIONS_RESOURCE}")
    return block.replace(VERSIONS_RESOURCE, str(versions_location()))


@dataclass(frozen=True)
class AppProject:
    """An application's alembic project: its Config, versions folder and head revision."""

    config: Config
    versions: Path
    head: str


def build_app_project(root: Path, url: str, ids: tuple[str, str], way: str) -> AppProject:
    """Write ``myapp`` and its alembic project under ``root``, for way ``"a"`` or ``"b"``."""
    (root / "myapp").mkdir(parents=True)
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "models.py").write_text(_MODELS)
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    shutil.copy(script_location() / "script.py.mako", root / "migrations" / "script.py.mako")
    (root / "migrations" / "env.py").write_text(env_py(way))
    first, second = ids
    (versions / f"{first}_users.py").write_text(_FIRST.format(revision=first))
    (versions / f"{second}_orders.py").write_text(_SECOND.format(revision=second, down=first))
    ini = _PLAIN_INI if way == "a" else way_b_ini()
    # prepend_sys_path "." is the folder alembic runs in; the tests run elsewhere.
    ini = ini.replace("prepend_sys_path = .", "prepend_sys_path = %(here)s")
    # With its driver: SQLAlchemy 2.1's default for postgresql:// is psycopg 3.
    rendered = resolve_url(url).render_as_string(hide_password=False)
    ini += f"sqlalchemy.url = {rendered.replace('%', '%%')}\n"
    (root / "alembic.ini").write_text(ini)
    return AppProject(Config(str(root / "alembic.ini")), versions, second)


@contextmanager
def app_imports() -> Iterator[None]:
    """Forget ``myapp`` and restore sys.path after a block that ran an app's env.py."""
    path = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = path
        for name in [n for n in sys.modules if n == "myapp" or n.startswith("myapp.")]:
            del sys.modules[name]


def alembic_version_rows(url: str) -> set[str] | None:
    """The rows of the application's ``alembic_version`` (None if there is no such table)."""
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            if connection.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None:
                return None
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return set(rows)
    finally:
        engine.dispose()
