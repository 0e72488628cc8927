"""docs/status.md proves every invariant twice: a simulation test (seeded schedules of real node
cores, tests/sim/) and a real-process test (tests/e2e/), unless the row says "not yet" and why.
Every test it names must exist."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATUS = ROOT / "docs" / "status.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
INVARIANT = re.compile(r"^\|\s*((?:EI|OA|MC|FS|RB|EF)-\d+)\s*\|", re.MULTILINE)


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test")
    }


def test_every_test_named_in_status_exists() -> None:
    text = STATUS.read_text()
    refs = TEST_REF.findall(text)
    assert refs, "docs/status.md names no tests"
    missing = []
    for file, name in refs:
        path = ROOT / file
        if not path.exists() or name not in _test_names(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/status.md names tests that do not exist: {missing}"


def test_every_invariant_is_proven_in_the_simulation_and_on_real_processes() -> None:
    text = STATUS.read_text()
    rows = [line for line in text.splitlines() if INVARIANT.match(line)]
    assert len(rows) >= 30, "docs/status.md lists too few invariants"
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == 4, row
        ident, _, simulation, real = cells
        sim_refs = [f for f, _ in TEST_REF.findall(simulation)]
        real_refs = [f for f, _ in TEST_REF.findall(real)]
        assert any(f.startswith("tests/sim/") for f in sim_refs) or simulation.startswith(
            "not yet"
        ), f"{ident}: no simulation test"
        assert any(_is_e2e(f) for f in real_refs) or real.startswith("not yet"), (
            f"{ident}: no real-process test"
        )


def _is_e2e(file: str) -> bool:
    """A test module of real processes: under tests/e2e/, or marked e2e."""
    return file.startswith("tests/e2e/") or "pytest.mark.e2e" in (ROOT / file).read_text()
