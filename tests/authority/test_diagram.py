from __future__ import annotations

from pathlib import Path

from igor_p2p.authority.diagram import render, render_mermaid
from igor_p2p.authority.table import TRANSITIONS

ROOT = Path(__file__).resolve().parents[2]


def test_committed_authority_doc_equals_the_generated_text() -> None:
    committed = (ROOT / "docs" / "authority.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m igor_p2p.authority.diagram > docs/authority.md"


def test_every_state_change_in_the_table_is_drawn() -> None:
    mermaid = render_mermaid()
    for (state, _event), rules in TRANSITIONS.items():
        for rule in rules:
            if rule.next_state is not None and rule.next_state != state:
                src = "[*]" if state == "ABSENT" else str(state)
                assert f"{src} --> {rule.next_state} :" in mermaid


def test_protocol_specs_embed_the_current_diagram() -> None:
    mermaid = render_mermaid()
    for doc in ("igor-migrate-1.0.0.md", "igor-recover-1.0.0.md"):
        assert mermaid in (ROOT / "protocols" / doc).read_text(encoding="utf-8"), doc
