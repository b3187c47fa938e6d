"""README's "Behind PgBouncer and on replicated servers" blocks run through a real PgBouncer.

``database_url`` is this test's migrated database reached through the
session's PgBouncer in transaction mode (tests/topology/conftest.py), checked
for leftover session state afterwards; the blocks find it in
$PORTFOLIO_CORE_DATABASE_URL, as the README says.
"""

from __future__ import annotations

import pytest

from portfolio_core.persistence.engine import DATABASE_URL_ENV
from tests.integration.readme_blocks import SECTIONS_RUN_ELSEWHERE, run_section, section_blocks

SECTION = "Behind PgBouncer and on replicated servers"


def test_the_section_s_blocks_run_through_pgbouncer(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert SECTIONS_RUN_ELSEWHERE[SECTION] == "tests/topology/test_readme_topology.py"
    blocks = section_blocks(SECTION)
    assert blocks, "the section has no python block left: drop it from SECTIONS_RUN_ELSEWHERE"
    monkeypatch.setenv(DATABASE_URL_ENV, database_url)

    run_section(blocks)
