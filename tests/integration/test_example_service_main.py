"""``python -m examples.portfolio_service`` as the README runs it: serves, stops on SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from portfolio_core.units import Seconds

REPOSITORY = Path(__file__).resolve().parents[2]
# Start-up is an interpreter, imports and a migration check: seconds. The polls
# bound a run that never starts (about 60 s) so it fails instead of hanging.
_POLLS = 600
_PAUSE: Seconds = 0.1
_EXIT_TIMEOUT: Seconds = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_module_serves_the_database_given_and_stops_on_sigint(database_url: str) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "examples.portfolio_service", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--database-url", database_url],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        pause = threading.Event()  # never set: a bounded pause between polls
        health: httpx.Response | None = None
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(_POLLS):
                if process.poll() is not None:
                    break
                try:
                    health = client.get("/health")
                    break
                except httpx.TransportError:
                    pause.wait(_PAUSE)
            assert process.poll() is None, process.communicate()[0]
            assert health is not None, "the service did not answer"
            assert health.status_code == 204
            created = client.post("/portfolios", json={"name": "alpha", "cash_balance": "10"})
            assert (created.status_code, created.headers["ETag"]) == (201, '"1"')
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=_EXIT_TIMEOUT)
        assert process.returncode == 0, output
        assert "Application shutdown complete" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
