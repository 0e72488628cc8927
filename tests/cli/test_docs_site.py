"""The documentation site builds with ``mkdocs build --strict`` (offline), every page linked
from the nav, and no internal rules page published."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_strict_build_passes_and_leaves_out_internal_pages(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site / "getting-started" / "index.html").exists()
    assert (site / "deploy" / "index.html").exists()
    assert not (site / "dev").exists(), "internal rules pages are not published"


def test_getting_started_is_the_first_link_of_the_index_and_the_readme() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    first = next(line for line in index.splitlines() if line.startswith("- "))
    assert "getting-started.md" in first
    readme = (ROOT / "README.md").read_text()
    links = [line for line in readme.splitlines() if "docs/" in line and ".md" in line]
    assert "docs/getting-started.md" in links[0]


def test_readme_keeps_exactly_two_setup_commands_and_backgrounds_no_chatty_node() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## The two commands", 1)[1].split("```")[1]
    assert [line.split()[0:2] for line in block.strip().splitlines()] == [
        ["make", "demo"],
        ["make", "test"],
    ]
    for line in readme.splitlines():
        if "igor node run" in line:
            assert "--detach" in line or "--log-file" in line, line
            assert not line.rstrip().endswith("&"), line
    assert "igor node stop" in readme
