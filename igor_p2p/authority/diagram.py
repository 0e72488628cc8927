"""Render docs/authority.md from the authority table.

Run ``python -m igor_p2p.authority.diagram > docs/authority.md`` after changing the table;
a test checks the committed file equals :func:`render`.

WARNING (after h11): guards are code. The diagram and the table show each guard by its name
only; what a guard reads (the event, the durable record, the volatile run phase) is in
:mod:`igor_p2p.authority.table`.
"""

from __future__ import annotations

from igor_p2p.authority.table import ABSENT, TRANSITIONS, Holding, Rule

_HEADER = """\
# Authority state machine

<!-- Generated from igor_p2p/authority/table.py by
     `python -m igor_p2p.authority.diagram > docs/authority.md`. Do not edit by hand. -->

One node's belief about its authority over one agent. `ABSENT` is the implicit state of an
agent the node never held (drawn as `[*]`). Only `ACTIVE_OWNER` may tick, and only an epoch for
which this process incarnation holds a witness certificate, between a `StartTicking` and the
next `StopTicking`: after a restart, a resume, an import or a forced recovery the node claims a
new epoch before it ticks. Actions are listed in the order a driver must run them; everything
after a `PersistAuthority` waits until that write is durable (write-ahead). A (state, event) pair
missing from the table, or an event none of its pair's guards accepts, raises
`IllegalTransition`.

Guards are code. Besides the event and the durable record they may read the volatile run of the
node: its phase (`TICKING`, `HANDING_OFF`, `CLAIMING`, `IDLE`), the epoch certified in this
incarnation, and whether this incarnation prepared the pending copy. A restarted node starts
with an empty run. The tables show each guard by its name.
"""


def _node(state: Holding) -> str:
    return "[*]" if state is ABSENT else str(state)


def _rows() -> list[tuple[Holding, str, int, Rule]]:
    return [
        (state, event.__name__, index, rule)
        for (state, event), rules in TRANSITIONS.items()
        for index, rule in enumerate(rules)
    ]


def guard_text(index: int, rule: Rule) -> str:
    """A guard's name; an unnamed guard is "—" as a pair's only rule, "otherwise" after others."""
    if rule.guard.name:
        return rule.guard.name
    return "otherwise" if index else "—"


def render_mermaid() -> str:
    """The stateDiagram-v2 of every rule that changes the state."""
    edges: dict[tuple[str, str], list[str]] = {}
    for state, event, _index, rule in _rows():
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
    ]
    for state, event, index, rule in _rows():
        nxt = "(unchanged)" if rule.next_state is None else str(rule.next_state)
        actions = ", ".join(a.__name__ for a in rule.actions) or "—"
        lines.append(f"| {state} | {event} | {guard_text(index, rule)} | {nxt} | {actions} |")
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
