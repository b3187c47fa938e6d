"""Upgrade and downgrade a database with the alembic scripts bundled in the package."""

from __future__ import annotations

import io
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from alembic import command
from portfolio_core.errors import ConfigurationError
from portfolio_core.persistence.engine import create_engine, resolve_url
from portfolio_core.persistence.errors import translated


def script_location() -> Path:
    """The folder of the migration environment (env.py, versions/).

    An installed wheel carries the checkout's top-level ``alembic/`` as
    ``portfolio_core/_alembic``; an editable install uses the checkout's.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "_alembic", package.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigurationError(f"no migration scripts found next to {package}")


def alembic_config(url: str | URL | None = None) -> Config:
    """An alembic Config for the bundled scripts, pointed at ``url`` (or the environment)."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    rendered = resolve_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def _run(engine_or_url: Engine | str | URL | None, action: str, revision: str) -> None:
    owned = not isinstance(engine_or_url, Engine)
    engine = (
        create_engine(engine_or_url) if not isinstance(engine_or_url, Engine) else engine_or_url
    )
    try:
        config = alembic_config(engine.url)
        # A server that can not be reached or refuses us: a typed error, not OperationalError.
        with translated(), engine.begin() as connection:
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
    finally:
        if owned:
            engine.dispose()


def migrate(engine_or_url: Engine | str | URL | None = None, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (default: the newest) with the bundled scripts."""
    _run(engine_or_url, "upgrade", revision)


def downgrade(engine_or_url: Engine | str | URL | None, revision: str) -> None:
    """Downgrade the database to ``revision`` (``"base"`` removes every table)."""
    _run(engine_or_url, "downgrade", revision)


def upgrade_sql(
    url: str | URL | None = None, revision: str = "head", from_revision: str | None = None
) -> str:
    """The SQL that upgrading to ``revision`` would run, without running it (offline mode)."""
    config = alembic_config(url)
    buffer = io.StringIO()
    config.output_buffer = buffer
    target = f"{from_revision}:{revision}" if from_revision else revision
    command.upgrade(config, target, sql=True)
    return buffer.getvalue()


def head_revision() -> str:
    """The newest revision of the bundled scripts."""
    head = ScriptDirectory.from_config(
        alembic_config("postgresql://localhost/unused")
    ).get_current_head()
    assert head is not None
    return head
