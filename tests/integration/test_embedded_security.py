"""The embedded server lets no other local user in and leaves the caller's folders alone."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from portfolio_core.embedded import EmbeddedPostgres
from portfolio_core.errors import ConfigurationError

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    """A server of this module's own (the session's may be an external one)."""
    started = EmbeddedPostgres()
    started.start()
    try:
        yield started
    finally:
        started.stop()


def test_a_connection_without_the_servers_password_is_refused(server: EmbeddedPostgres) -> None:
    url = make_url(server.url)
    assert url.password
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", password="x"
        )
    connection = psycopg2.connect(url.render_as_string(hide_password=False))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT auth_method FROM pg_hba_file_rules")
            methods = {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()
    assert "trust" not in methods


def test_each_server_gets_its_own_password(server: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres()
    try:
        assert make_url(other.url).password != make_url(server.url).password
    finally:
        other.stop()


@AS_ROOT
def test_the_server_runs_without_roots_group(server: EmbeddedPostgres) -> None:
    pid = int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in status}
    assert "0" not in fields["Uid"]
    assert "0" not in fields["Gid"]
    assert "0" not in fields["Groups"]


def _modes(path: Path) -> dict[Path, int]:
    return {parent: stat.S_IMODE(parent.stat().st_mode) for parent in path.parents}


@AS_ROOT
def test_the_callers_private_folders_keep_their_permissions() -> None:
    private = Path(tempfile.mkdtemp(prefix="pc-caller-"))
    try:
        (private / "nested").mkdir(mode=0o700)
        data_dir = private / "nested" / "data"
        before = _modes(data_dir)
        server = EmbeddedPostgres(data_dir)
        try:
            with pytest.raises(ConfigurationError, match="embedded_postgres"):
                server.start()
        finally:
            server.stop()
        assert _modes(data_dir) == before
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(private)


@AS_ROOT
def test_a_server_of_its_own_runs_in_a_private_folder(server: EmbeddedPostgres) -> None:
    import pwd

    private = server.data_dir.parent
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert private.stat().st_uid == pwd.getpwnam("embedded_postgres").pw_uid
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
