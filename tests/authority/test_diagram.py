"""docs/authority.md is generated from the authority table and stays equal to it."""

from __future__ import annotations

from pathlib import Path

from igor_p2p.authority.diagram import guard_text, render, render_mermaid, render_table
from igor_p2p.authority.table import TRANSITIONS

ROOT = Path(__file__).resolve().parents[2]


def test_committed_authority_doc_equals_the_generated_text() -> None:
    committed = (ROOT / "docs" / "authority.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m igor_p2p.authority.diagram > docs/authority.md"


def test_every_state_change_in_the_table_is_drawn() -> None:
    mermaid = render_mermaid()
    for (state, event), rules in TRANSITIONS.items():
        for rule in rules:
            if rule.next_state is not None and rule.next_state != state:
                src = "[*]" if state == "ABSENT" else str(state)
                assert f"{src} --> {rule.next_state} :" in mermaid
                edge = next(
                    line
                    for line in mermaid.splitlines()
                    if f"{src} --> " in line and f"--> {rule.next_state} :" in line
                )
                assert event.__name__ in edge


def test_every_rule_is_a_row_of_the_table_with_its_guard_and_actions() -> None:
    rows = render_table().splitlines()[2:]
    expected = [
        (state, event.__name__, guard_text(i, rule), [a.__name__ for a in rule.actions])
        for (state, event), rules in TRANSITIONS.items()
        for i, rule in enumerate(rules)
    ]
    assert len(rows) == len(expected)
    for row, (state, event, guard, actions) in zip(rows, expected, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:3] == [str(state), event, guard]
        assert cells[4] == (", ".join(actions) or "—")


def test_the_doc_no_longer_describes_a_fence_pre_check() -> None:
    # The table has no hidden rule outside TRANSITIONS any more: stale epochs are guards.
    assert "epoch < fence" not in render()
