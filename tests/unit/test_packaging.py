"""The wheel ships every package of the source tree (a package left out of
pyproject.toml's explicit list imports in a checkout but breaks an install)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "portfolio_core").rglob("__init__.py")
    }
    assert on_disk - listed == set()
