"""The application role: exactly the privileges the store needs, and nothing to rewrite history.

Run the library with two roles. The *owner* owns the tables and runs the
migrations; the *app* role, the one the store connects as, gets only the DML
below from :func:`grant_app_role`. The append-only triggers on
``portfolio_events`` stop UPDATE, DELETE and TRUNCATE by anyone, but a table
owner can ``ALTER TABLE ... DISABLE TRIGGER`` and a superuser can
``SET session_replication_role = replica``; a role that owns nothing and is
no superuser can do neither, so for it the audit trail is append-only for
good, and its events can only be written at the version its own transaction
gave the portfolio (``portfolio_events_at_current_version``).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, Connection

from portfolio_core.errors import ValidationError
from portfolio_core.persistence.engine import create_engine
from portfolio_core.persistence.schema_option import (
    qualified_name,
    quoted_schema,
    schema_of,
    validate_schema,
)

APP_ROLE_PRIVILEGES: Final[dict[str, tuple[str, ...]]] = {
    "portfolios": ("SELECT", "INSERT", "UPDATE"),
    "positions": ("SELECT", "INSERT", "UPDATE"),
    # The audit trail only grows: no UPDATE, DELETE or TRUNCATE, ever.
    "portfolio_events": ("SELECT", "INSERT"),
    # DELETE for purge_idempotency_keys.
    "idempotency_keys": ("SELECT", "INSERT", "DELETE"),
}
"""Table -> the privileges the store's SQL uses on it (the store never deletes a portfolio)."""


def grant_app_role(
    engine_or_url: Engine | str | URL, role: str, *, schema: str | None = None
) -> None:
    """Give the existing ``role`` exactly :data:`APP_ROLE_PRIVILEGES` (any others revoked).

    Run it as the tables' owner after migrating (``portfolio-core migrate
    --grant-app-role ROLE``). The role must not own the tables nor be a
    superuser, or the triggers guarding the audit trail can be switched off.
    ``schema`` (default: the engine's ``schema=``, else the connection's
    current schema): where the tables are; the role gets USAGE on it.
    """
    if not isinstance(role, str) or not role:
        raise ValidationError("role", role, "must be a role name")
    if schema is not None:
        validate_schema(schema)
    owned = not isinstance(engine_or_url, Engine)
    engine = engine_or_url if isinstance(engine_or_url, Engine) else create_engine(engine_or_url)
    schema = schema or schema_of(engine)
    quoted = engine.dialect.identifier_preparer.quote(role)
    try:
        with engine.begin() as connection:
            super_or_owner = connection.execute(
                text(
                    "SELECT r.rolsuper OR EXISTS (SELECT 1 FROM pg_tables t WHERE "
                    "t.tablename = 'portfolio_events' "
                    "AND t.schemaname = coalesce(:schema, current_schema()) "
                    "AND t.tableowner = r.rolname) FROM pg_roles r WHERE r.rolname = :role"
                ),
                {"role": role, "schema": schema},
            ).scalar_one_or_none()
            if super_or_owner is None:
                raise ValidationError("role", role, "does not exist (CREATE ROLE it first)")
            if super_or_owner:
                raise ValidationError(
                    "role", role, "is a superuser or owns the tables: it could disable triggers"
                )
            on_schema = _schema(connection) if schema is None else quoted_schema(schema)
            connection.execute(text(f"GRANT USAGE ON SCHEMA {on_schema} TO {quoted}"))
            for name, privileges in APP_ROLE_PRIVILEGES.items():
                table = qualified_name(name, schema)
                connection.execute(text(f"REVOKE ALL ON {table} FROM {quoted}"))
                connection.execute(text(f"GRANT {', '.join(privileges)} ON {table} TO {quoted}"))
    finally:
        if owned:
            engine.dispose()


def _schema(connection: Connection) -> str:
    name = connection.execute(text("SELECT current_schema()")).scalar_one()
    return connection.dialect.identifier_preparer.quote(str(name))
