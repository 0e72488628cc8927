"""Render docs/authority.md from the authority table.

Run ``python -m igor_p2p.authority.diagram > docs/authority.md`` after changing the table;
a test checks the committed file equals :func:`render`.
"""

from __future__ import annotations

from igor_p2p.authority.table import ABSENT, STALE_RULE_TEXT, TRANSITIONS, Holding, Rule

_HEADER = """\
# Authority state machine

<!-- Generated from igor_p2p/authority/table.py by
     `python -m igor_p2p.authority.diagram > docs/authority.md`. Do not edit by hand. -->

One node's belief about its authority over one agent. `ABSENT` is the implicit state of an
agent the node never held (drawn as `[*]`). Only `ACTIVE_OWNER` may tick, and only between a
`StartTicking` and the next `StopTicking`. Actions are listed in the order a driver must run
them; everything after a `PersistAuthority` waits until that write is durable (write-ahead).
A (state, event) pair missing from the table raises `IllegalTransition`.
"""


def _node(state: Holding) -> str:
    return "[*]" if state is ABSENT else str(state)


def _rows() -> list[tuple[Holding, str, Rule]]:
    return [
        (state, event.__name__, rule)
        for (state, event), rules in TRANSITIONS.items()
        for rule in rules
    ]


def render_mermaid() -> str:
    """The stateDiagram-v2 of every rule that changes the state."""
    edges: dict[tuple[str, str], list[str]] = {}
    for state, event, rule in _rows():
        if rule.next_state is None or rule.next_state == state:
            continue
        labels = edges.setdefault((_node(state), _node(rule.next_state)), [])
        if event not in labels:
            labels.append(event)
    lines = ["stateDiagram-v2"]
    lines += [f"    {src} --> {dst} : {', '.join(labels)}" for (src, dst), labels in edges.items()]
    return "\n".join(lines) + "\n"


def render_table() -> str:
    lines = [
        "| state | event | guard | next state | actions |",
        "|---|---|---|---|---|",
        f"| any | any event carrying an epoch | epoch < fence | (unchanged) | {STALE_RULE_TEXT} |",
    ]
    for state, event, rule in _rows():
        nxt = "(unchanged)" if rule.next_state is None else str(rule.next_state)
        actions = ", ".join(a.__name__ for a in rule.actions) or "—"
        guard = rule.guard.name or "—"
        lines.append(f"| {state} | {event} | {guard} | {nxt} | {actions} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    return (
        _HEADER
        + "\n## Diagram\n\n```mermaid\n"
        + render_mermaid()
        + "```\n\n## Transition table\n\nRules for one (state, event) pair are tried in order;"
        " the first whose guard holds applies.\n\n" + render_table()
    )


if __name__ == "__main__":
    print(render(), end="")
