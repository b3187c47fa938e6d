"""The ```python blocks of README.md, by section, for the tests that run them.

Every python block of the README is executed by the suite; these are the
conventions a block must keep to (``test_readme_blocks.py`` checks them):

- A block belongs to the innermost ``##``/``###`` heading above it, its
  *section*. The blocks of one section share one namespace and run in order,
  as written, with ``$PORTFOLIO_CORE_DATABASE_URL`` naming a fresh database
  of their own (``create_engine()`` with no URL reads it): an empty one if a
  block of the section calls ``migrate(`` (it shows how the tables come to
  be), a freshly migrated one otherwise. A section never depends on the
  blocks of another.
- A block whose first line is a file-name comment (``# migrations/env.py,
  way (a)``) is a file of a project, not a snippet: the test that owns it
  runs it, and it is listed in :data:`FILE_BLOCKS` with that test.
- A section whose blocks need more than a database is run by its own test,
  listed in :data:`SECTIONS_RUN_ELSEWHERE`.
- Every block except file blocks passes ``mypy --strict``, one module per
  section.

New sections and blocks are picked up by themselves: a block that fails,
or that no test runs, fails the suite. (The Python of examples/ runs in its
own tests: examples/test_concentration_limit.py in test_testing_kit.py.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REPOSITORY: Final = Path(__file__).resolve().parents[2]
README: Final = REPOSITORY / "README.md"

FILE_BLOCKS: Final[dict[str, str]] = {
    "# migrations/env.py, way (a)": "tests/integration/test_alembic_coexistence.py",
    "# migrations/env.py, way (b)": "tests/integration/test_alembic_coexistence.py",
}
"""First line of each file block -> the test that runs it."""

SECTIONS_RUN_ELSEWHERE: Final[dict[str, str]] = {
    # pytest modules: run by a pytest of their own, as a service would.
    "Testing your service": "tests/integration/test_testing_kit.py",
    # Needs a PgBouncer in transaction mode.
    "Behind PgBouncer and on replicated servers": "tests/topology/test_readme_topology.py",
    # Needs a primary and a hot standby.
    "Read replicas": "tests/topology/test_read_replicas.py",
}
"""Section title -> the test that runs its blocks."""

_HEADING: Final = re.compile(r"(#{2,3}) (.+)")
_FILE_COMMENT: Final = re.compile(r"# [\w./-]+\.\w+\b")


@dataclass(frozen=True)
class Block:
    """One python block: its section, the README line of its opening fence, its code."""

    section: str
    line: int
    code: str

    @property
    def file_name(self) -> str | None:
        """The first line if it names a file (``# migrations/env.py, ...``), else None."""
        first = self.code.splitlines()[0] if self.code else ""
        return first if _FILE_COMMENT.match(first) else None

    @property
    def label(self) -> str:
        """Where the block is, for tracebacks and failure messages."""
        return f"README.md:{self.line} ({self.section})"


def python_blocks(text: str | None = None) -> list[Block]:
    """Every ```python block of the README (or of ``text``), in order."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    section = ""
    fence: tuple[str, int, list[str]] | None = None
    for number, line in enumerate(lines, start=1):
        if fence is not None:
            if line.startswith("```"):
                language, start, body = fence
                if language == "python":
                    blocks.append(Block(section, start, "\n".join(body) + "\n"))
                fence = None
            else:
                fence[2].append(line)
        elif line.startswith("```"):
            fence = (line[3:].strip(), number, [])
        elif heading := _HEADING.fullmatch(line):
            section = heading.group(2).strip()
    return blocks


def section_blocks(section: str) -> list[Block]:
    """The python blocks of ``section`` (its title without the hashes), file blocks excepted."""
    return [b for b in python_blocks() if b.section == section and b.file_name is None]


def sections_run_here() -> list[str]:
    """Sections with runnable blocks that ``test_readme_blocks.py`` runs, in README order."""
    titles = [
        b.section
        for b in python_blocks()
        if b.file_name is None and b.section not in SECTIONS_RUN_ELSEWHERE
    ]
    return list(dict.fromkeys(titles))


def needs_empty_database(blocks: list[Block]) -> bool:
    """Whether the section migrates itself, so starts from a database with no tables."""
    return any(re.search(r"\bmigrate\(", block.code) for block in blocks)


def schema_named(blocks: list[Block]) -> str | None:
    """The ``schema="..."`` the section's engines are given, if any (see "Its own schema")."""
    found = {m for block in blocks for m in re.findall(r'\bschema="(\w+)"', block.code)}
    return found.pop() if len(found) == 1 else None


def run_section(blocks: list[Block]) -> dict[str, object]:
    """Execute the blocks in order in one namespace; returns the namespace."""
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block.code, block.label, "exec"), namespace)
    return namespace
