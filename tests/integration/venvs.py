"""Throw-away virtualenvs for the wheel tests, and running commands in them.

A venv is made without pip (``--without-pip``: ensurepip is most of a venv's
creation time) and filled by this interpreter's pip aimed at it with
``--python``: the packages land in the venv's own site-packages, resolved and
installed with their dependencies exactly as the venv's own pip would.
``--no-compile``: the venv's Python is run a handful of times, so byte-compiling
every installed module up front costs more than it saves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command; its standard output (it must exit 0, else its output is shown)."""
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def new_venv(folder: Path, *requirements: str) -> Path:
    """A fresh virtualenv in ``folder`` with ``requirements`` installed; its ``python``."""
    run(sys.executable, "-m", "venv", "--without-pip", folder, cwd=folder.parent)
    python = folder / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *requirements,
        cwd=folder.parent,
    )
    return python
