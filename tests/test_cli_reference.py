"""docs/cli.md is generated from the CLI itself; it must match the code."""

from pathlib import Path

from igor_p2p.cli.docgen import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_matches_the_commands_the_code_defines() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m igor_p2p.cli.docgen > docs/cli.md"
