"""docs/status.md names, for every invariant, the test that proves it; those tests must exist."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATUS = ROOT / "docs" / "status.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
INVARIANT = re.compile(r"^\|\s*((?:EI|OA|MC|FS)-\d+)\s*\|", re.MULTILINE)


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


def test_every_invariant_row_names_a_test_or_says_why_not() -> None:
    text = STATUS.read_text()
    rows = [line for line in text.splitlines() if INVARIANT.match(line)]
    assert rows, "docs/status.md lists no invariants"
    for row in rows:
        assert TEST_REF.search(row) or "not yet" in row.lower(), row
