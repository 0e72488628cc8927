"""One self-contained HTML page per run: inline CSS and SVG, no scripts, no network.

Layout: the verdict (``id="verdict"``), the violations with their evidence, a summary table,
then a timeline with one lane per node (``data-lane="n1"``), each agent's tick intervals as
bars in the agent's colour (``data-agent``), handoffs as arrows between lanes, fault windows
shaded and labelled, and the ticks named by a violation outlined in red.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape

from testnet.checker import CHECK_NAMES, CHECK_TITLES, CheckResult, TickSpan, final_states
from testnet.history import Histories, TickEvent

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
)
SOURCE_STEPS = ("retired", "commit_sent")
TARGET_STEP = "committed"

WIDTH = 1200
LABEL_W = 60
LANE_H = 44
AXIS_H = 24

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
#verdict{font-size:2.4em;margin:0 0 .2em}
#verdict.pass{color:#1a7f37}#verdict.fail{color:#c62828}
table{border-collapse:collapse;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-size:.9em}
th{background:#f3f3f3}
.violations li{margin:.3em 0}.violations code{font-size:.8em;color:#555}
.legend span{display:inline-block;margin-right:1em}
.legend i{display:inline-block;width:1em;height:.8em;margin-right:.3em;vertical-align:middle}
svg text{font-size:11px;font-family:system-ui,sans-serif}
.bad{color:#c62828;font-weight:bold}
"""


@dataclass(frozen=True, slots=True)
class _Bar:
    node: str
    agent: str
    epoch: int
    start_ns: int
    end_ns: int
    ticks: int
    violating: bool


def _bars(ticks: list[TickEvent], hot: set[tuple[str, str, int, int]], merge_ns: int) -> list[_Bar]:
    """Merge consecutive ticks of one agent on one node and epoch into one bar when closer than
    ``merge_ns``; ticks named by a violation always get their own bar."""
    groups: dict[tuple[str, str, int], list[TickEvent]] = defaultdict(list)
    for t in ticks:
        groups[(t.node, t.agent, t.epoch)].append(t)
    bars: list[_Bar] = []
    for (node, agent, epoch), ts in groups.items():
        ts.sort(key=lambda t: t.start_ns)
        cur: list[int] | None = None  # [start, end, count]
        for t in ts:
            if (node, agent, t.epoch, t.tick) in hot:
                if cur:
                    bars.append(_Bar(node, agent, epoch, cur[0], cur[1], cur[2], False))
                    cur = None
                bars.append(_Bar(node, agent, epoch, t.start_ns, t.end_ns, 1, True))
            elif cur is not None and t.start_ns - cur[1] <= merge_ns:
                cur[1] = max(cur[1], t.end_ns)
                cur[2] += 1
            else:
                if cur:
                    bars.append(_Bar(node, agent, epoch, cur[0], cur[1], cur[2], False))
                cur = [t.start_ns, t.end_ns, 1]
        if cur:
            bars.append(_Bar(node, agent, epoch, cur[0], cur[1], cur[2], False))
    return bars


def _svg(history: Histories, result: CheckResult, colours: dict[str, str]) -> str:
    nodes = list(history.nodes)
    t0, t1 = history.start_ns, max(history.end_ns, history.start_ns + 1)
    span = t1 - t0
    plot_w = WIDTH - LABEL_W - 10

    def x(ns: int) -> float:
        return LABEL_W + (ns - t0) * plot_w / span

    lane_y = {n: AXIS_H + i * LANE_H for i, n in enumerate(nodes)}
    height = AXIS_H + LANE_H * len(nodes) + 10
    bad_nodes = {n for v in result.violations for n in v.nodes()}
    hot_spans: set[TickSpan] = {s for v in result.violations for s in v.highlight_spans()}
    hot = {
        (s.node, v.agent, s.epoch, s.tick) for v in result.violations for s in v.highlight_spans()
    }
    del hot_spans
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#333"/></marker></defs>',
    ]
    # axis
    for i in range(11):
        ns = t0 + span * i // 10
        out.append(
            f'<line x1="{x(ns):.1f}" y1="{AXIS_H - 4}" x2="{x(ns):.1f}" y2="{height - 10}" '
            f'stroke="#eee"/><text x="{x(ns):.1f}" y="{AXIS_H - 8}" text-anchor="middle">'
            f"{(ns - t0) / 1e9:.2f}s</text>"
        )
    for n in nodes:
        y = lane_y[n]
        stroke = ' stroke="#c62828" stroke-width="2"' if n in bad_nodes else ' stroke="#ddd"'
        out.append(
            f'<g class="lane" data-lane="{escape(n)}"><rect x="{LABEL_W}" y="{y}" '
            f'width="{plot_w}" height="{LANE_H - 6}" fill="#fafafa"{stroke}/>'
            f'<text x="4" y="{y + LANE_H / 2}">{escape(n)}</text></g>'
        )
    # fault windows
    for w in history.fault_windows:
        if w.node not in lane_y:
            continue
        end = w.end_ns if w.end_ns is not None else t1
        y = lane_y[w.node]
        label = w.fault + (f" {w.detail}" if isinstance(w.detail, str) and w.detail else "")
        out.append(
            f'<g class="fault" data-node="{escape(w.node)}" data-fault="{escape(w.fault)}">'
            f'<rect x="{x(w.start_ns):.1f}" y="{y}" width="{max(x(end) - x(w.start_ns), 1):.1f}" '
            f'height="{LANE_H - 6}" fill="#f5a623" fill-opacity="0.18"/>'
            f'<text x="{x(w.start_ns) + 2:.1f}" y="{y + LANE_H - 9}" fill="#a15c00">'
            f"{escape(label[:40])}</text></g>"
        )
    # tick bars
    merge_ns = max(1, span // plot_w)
    agents = list(colours)
    band = (LANE_H - 16) / max(1, len(agents))
    for b in _bars(history.ticks, hot, merge_ns):
        y = lane_y[b.node] + 3 + agents.index(b.agent) * band
        outline = (
            ' stroke="#c62828" stroke-width="2" class="bar violation"'
            if b.violating
            else (' class="bar"')
        )
        out.append(
            f'<rect{outline} data-agent="{escape(b.agent)}" data-node="{escape(b.node)}" '
            f'data-epoch="{b.epoch}" data-ticks="{b.ticks}" x="{x(b.start_ns):.1f}" y="{y:.1f}" '
            f'width="{max(x(b.end_ns) - x(b.start_ns), 1.5):.1f}" height="{max(band - 2, 2):.1f}" '
            f'fill="{colours[b.agent]}"><title>{escape(b.agent)} on {escape(b.node)} epoch '
            f"{b.epoch}: {b.ticks} tick(s)</title></rect>"
        )
    # handoff arrows
    sources: dict[tuple[str, str | None], tuple[str, int]] = {}
    for h in history.handoffs:
        if h.step in SOURCE_STEPS:
            sources.setdefault((h.agent, h.migration_id), (h.node, h.mono_ns))
    for h in history.handoffs:
        src = sources.get((h.agent, h.migration_id))
        if h.step != TARGET_STEP or src is None or src[0] not in lane_y or h.node not in lane_y:
            continue
        y1 = lane_y[src[0]] + (LANE_H - 6) / 2
        y2 = lane_y[h.node] + (LANE_H - 6) / 2
        out.append(
            f'<line class="handoff" data-agent="{escape(h.agent)}" data-from="{escape(src[0])}" '
            f'data-to="{escape(h.node)}" x1="{x(src[1]):.1f}" y1="{y1:.1f}" '
            f'x2="{x(h.mono_ns):.1f}" '
            f'y2="{y2:.1f}" stroke="{colours.get(h.agent, "#333")}" stroke-width="1.5" '
            f'marker-end="url(#arrow)"><title>{escape(h.agent)}: {escape(src[0])} → '
            f"{escape(h.node)} (epoch {h.epoch})</title></line>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _summary(history: Histories, result: CheckResult) -> str:
    rows = []
    for name in CHECK_NAMES:
        c = result.counts.get(name)
        if c is None:
            continue
        status = "skipped" if c.skipped else ("ok" if c.violations == 0 else "VIOLATED")
        cls = ' class="bad"' if c.violations else ""
        rows.append(
            f"<tr><td>{escape(CHECK_TITLES[name])}</td><td{cls}>{status}</td><td>{c.checked}</td>"
            f"<td>{c.violations}</td><td>{escape(c.note)}</td></tr>"
        )
    checks = (
        "<table><tr><th>check</th><th>status</th><th>checked</th><th>violations</th><th>note</th>"
        "</tr>" + "".join(rows) + "</table>"
    )
    states = final_states(history, None)
    per_agent = []
    for agent in history.agents:
        ticks = [t for t in history.ticks if t.agent == agent]
        nodes = sorted({t.node for t in ticks})
        epochs = sorted({t.epoch for t in ticks})
        fin = (
            ", ".join(
                f"{s.node}={s.state}" for s in sorted(states[agent].values(), key=lambda s: s.node)
            )
            if agent in states
            else ""
        )
        per_agent.append(
            f"<tr><td>{escape(agent)}</td><td>{len(ticks)}</td>"
            f"<td>{sum(t.cost for t in ticks)}</td>"
            f"<td>{escape(', '.join(nodes))}</td><td>{len(epochs)}</td><td>{escape(fin)}</td></tr>"
        )
    agents = (
        "<table><tr><th>agent</th><th>ticks</th><th>cost µ</th><th>nodes</th><th>epochs</th>"
        "<th>final authority</th></tr>" + "".join(per_agent) + "</table>"
    )
    per_node = []
    for n in history.nodes:
        per_node.append(
            f"<tr><td>{escape(n)}</td><td>{sum(1 for t in history.ticks if t.node == n)}</td>"
            f"<td>{sum(1 for c in history.commits if c.node == n)}</td>"
            f"<td>{sum(1 for f in history.faults if f.node == n)}</td>"
            f"<td>{'yes' if n in history.torn_nodes else ''}</td></tr>"
        )
    nodes = (
        "<table><tr><th>node</th><th>ticks</th><th>commits</th><th>fault events</th>"
        "<th>torn last line</th></tr>" + "".join(per_node) + "</table>"
    )
    return checks + agents + nodes


def render_report(history: Histories, result: CheckResult, *, title: str) -> str:
    """The whole report as one HTML document (no external resources)."""
    colours = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(history.agents)}
    verdict = result.verdict
    if result.violations:
        items = "".join(
            f'<li data-check="{escape(v.check)}"><b>{escape(type(v).__name__)}</b>: '
            f"{escape(v.summary())}</li>"
            for v in result.violations
        )
        hidden = sum(c.violations for c in result.counts.values()) - len(result.violations)
        more = f"<p>{hidden} more violation(s) not listed.</p>" if hidden > 0 else ""
        violations = f'<h2>Violations</h2><ol class="violations">{items}</ol>{more}'
    else:
        violations = "<p>No violations.</p>"
    legend = "".join(
        f'<span data-legend="{escape(a)}"><i style="background:{c}"></i>{escape(a)}</span>'
        for a, c in colours.items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<p>{escape(title)}</p>"
        f'<h1 id="verdict" class="{verdict.lower()}">{verdict}</h1>'
        f"<p>{result.events} events from {len(history.nodes)} node(s), "
        f"{len(history.agents)} agent(s); checked in {result.elapsed_s * 1000:.1f} ms.</p>"
        f"{violations}<h2>Summary</h2>{_summary(history, result)}"
        f'<h2>Timeline</h2><div class="legend">{legend}</div>'
        f"{_svg(history, result, colours)}"
        "<p>Bars: tick intervals (consecutive ticks merged), one colour per agent; arrows: "
        "handoffs from the source's retire to the target's commit; shaded: fault windows; "
        "red outline: named by a violation.</p></body></html>\n"
    )


__all__ = ["render_report"]
