"""One self-contained HTML page per run: inline CSS and SVG, no scripts, no network.

Layout: the verdict (``id="verdict"``); the violations (``id="v1"``…), each with its evidence and
a link to it on the timeline; the fault schedule with times; summary tables; then two
timelines on one time axis, in seconds from the start of the fault schedule (``run.json``'s
``t0_mono_ns``; the first event when there is none):

* by agent: one row per agent (``data-row="a1"``), bars coloured by the node it ticked on, a
  row of faults above, handoffs marked, violation evidence outlined and linked;
* by node: one lane per node (``data-lane="n1"``), bars in the agent's colour, handoff arrows
  between lanes, fault windows shaded.

Agents are shown by label (``a1``…, from ``testnet.json``), the full DID on hover. Violations
are read generically from ``Violation.to_dict()`` (check, type, summary, fields): tick spans
(``node``, ``start_ns``, ``end_ns``) and ``*_ns`` times in the fields become evidence on the
timeline, so a new check renders without changes here.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from testnet.checker import CHECK_TITLES, CheckResult, final_states
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
SOURCE_STEPS = ("transferred",)
"""The source's step when its transfer is certified; the target's ``committed`` follows."""
TARGET_STEP = "committed"
STATE_FILE = "testnet.json"
RUN_FILE = "run.json"

MIN_WIDTH = 1200
MAX_WIDTH = 6000
PX_PER_S = 16
"""Timeline zoom: at least this many pixels per second (3 agents over 90 s: 1440 px)."""
LABEL_W = 70
LANE_H = 44
ROW_H = 30
AXIS_H = 24
FAULT_ROW_H = 20
GROUP_NS = 1_000_000_000
"""Windows of one fault that start within this of each other are one row (told in turn)."""
NS_TOKEN = re.compile(r"\b(\d{12,})(?: ns\b)?")

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
#verdict{font-size:2.4em;margin:0 0 .2em}
#verdict.pass{color:#1a7f37}#verdict.fail{color:#c62828}
table{border-collapse:collapse;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-size:.9em}
th{background:#f3f3f3}
.violations li{margin:.4em 0}.violations code{font-size:.8em;color:#555}
.violations li:target{background:#fff3cd}
.legend span{display:inline-block;margin-right:1em}
.legend i{display:inline-block;width:1em;height:.8em;margin-right:.3em;vertical-align:middle}
.scroll{overflow-x:auto;border:1px solid #eee}
svg text{font-size:11px;font-family:system-ui,sans-serif}
.bad{color:#c62828;font-weight:bold}
abbr{text-decoration:underline dotted}
.evidence:target,.evidence:hover{stroke-width:4}
"""


# ---------------------------------------------------------------------------------------------
# context: labels, time zero, schedule


@dataclass(frozen=True)
class ReportContext:
    """What the histories do not say: agent labels, the run's time zero and its schedule."""

    labels: Mapping[str, str] = field(default_factory=dict)
    """DID → label (``a1``…)."""
    origin_ns: int | None = None
    """Monotonic ns of t = 0 (the start of the fault schedule); None: the first event."""
    schedule: tuple[Mapping[str, Any], ...] = ()
    """The planned steps: ``at_s``, ``action`` and the step's arguments."""


def load_context(root: str | Path) -> ReportContext:
    """Labels from ``root/testnet.json``, time zero and schedule from ``root/run.json``."""
    root = Path(root)
    labels: dict[str, str] = {}
    origin: int | None = None
    schedule: tuple[Mapping[str, Any], ...] = ()
    try:
        state = json.loads((root / STATE_FILE).read_text(encoding="utf-8"))
        labels = {str(did): str(label) for label, did in dict(state.get("agents", {})).items()}
    except (OSError, ValueError, AttributeError):
        pass
    try:
        run = json.loads((root / RUN_FILE).read_text(encoding="utf-8"))
        if isinstance(run.get("t0_mono_ns"), int):
            origin = run["t0_mono_ns"]
        schedule = tuple(s for s in run.get("schedule", []) if isinstance(s, dict))
    except (OSError, ValueError, AttributeError):
        pass
    return ReportContext(labels, origin, schedule)


class _Clock:
    """Monotonic ns ↔ seconds from time zero ↔ x pixels."""

    def __init__(self, history: Histories, origin_ns: int | None, plot_w: float) -> None:
        self.t0 = history.start_ns
        self.t1 = max(history.end_ns, self.t0 + 1)
        self.origin = origin_ns if origin_ns is not None else self.t0
        self.plot_w = plot_w

    def s(self, ns: int) -> float:
        return (ns - self.origin) / 1e9

    def x(self, ns: int) -> float:
        return LABEL_W + (ns - self.t0) * self.plot_w / (self.t1 - self.t0)

    def text(self, ns: int) -> str:
        return f"{self.s(ns):.2f} s"

    def seconds_in(self, text: str) -> str:
        """``text`` with every monotonic-ns number in the run's span written as seconds."""
        margin = self.t1 - self.t0 + 60 * 10**9

        def one(m: re.Match[str]) -> str:
            value = int(m.group(1))
            if self.t0 - margin <= value <= self.t1 + margin:
                return self.text(value)
            return m.group(0)

        return NS_TOKEN.sub(one, text)


def _labels(history: Histories, context: ReportContext) -> dict[str, str]:
    labels = {a: context.labels[a] for a in history.agents if a in context.labels}
    taken = set(labels.values())
    n = 0
    for a in history.agents:
        if a in labels:
            continue
        n += 1
        while f"a{n}" in taken:
            n += 1
        labels[a] = f"a{n}"
        taken.add(labels[a])
    return labels


def _by_label(agents: Any, labels: Mapping[str, str]) -> list[str]:
    """Agents in label order (a1, a2, … a10)."""

    def key(a: str) -> tuple[int, str]:
        label = labels.get(a, a)
        digits = label.lstrip("a")
        return (int(digits), label) if digits.isdigit() else (1 << 30, label)

    return sorted(agents, key=key)


def _agent_tag(did: str, labels: Mapping[str, str]) -> str:
    return f'<abbr title="{escape(did)}">{escape(labels.get(did, did))}</abbr>'


# ---------------------------------------------------------------------------------------------
# violations, read generically


@dataclass(frozen=True)
class _Evidence:
    vid: str
    agent: str
    node: str | None
    start_ns: int
    end_ns: int | None
    what: str


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def _evidence(vid: str, fields: Mapping[str, Any]) -> list[_Evidence]:
    """Tick spans (mappings with ``node``, ``start_ns``, ``end_ns``) and ``*_ns`` times."""
    agent = str(fields.get("agent", ""))
    out: list[_Evidence] = []
    for path, value in _walk(fields):
        if isinstance(value, Mapping) and isinstance(value.get("start_ns"), int):
            end = value.get("end_ns")
            node = value.get("node")
            out.append(
                _Evidence(
                    vid,
                    agent,
                    node if isinstance(node, str) else None,
                    value["start_ns"],
                    end if isinstance(end, int) else None,
                    path or "tick",
                )
            )
        key = path.rsplit(".", 1)[-1]
        if (
            key.endswith("_ns")
            and key not in ("start_ns", "end_ns", "overlap_ns")
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            parent = fields
            node = parent.get("node") if isinstance(parent.get("node"), str) else None
            out.append(_Evidence(vid, agent, node, value, None, path))
    return out


def _violation_dicts(result: CheckResult) -> list[dict[str, Any]]:
    out = []
    for v in result.violations:
        try:
            d = dict(v.to_dict())
        except Exception:  # a check's own rendering failed: keep its summary
            d = {"check": getattr(v, "check", "?"), "summary": str(v)}
        out.append(d)
    return out


def _field_rows(fields: Mapping[str, Any], clock: _Clock, labels: Mapping[str, str]) -> str:
    rows = []
    for key, value in fields.items():
        if key in ("check", "type", "summary"):
            continue
        if key == "agent" and isinstance(value, str):
            shown = _agent_tag(value, labels)
        elif key.endswith("_ns") and isinstance(value, int) and key != "overlap_ns":
            shown = escape(clock.text(value))
        elif key == "overlap_ns" and isinstance(value, int):
            shown = f"{value / 1e9:.3f} s"
        else:
            text = json.dumps(value, default=str) if not isinstance(value, str) else value
            shown = escape(clock.seconds_in(_ns_fields_to_seconds(text, clock)))
        rows.append(f"<tr><th>{escape(key)}</th><td><code>{shown}</code></td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _ns_fields_to_seconds(text: str, clock: _Clock) -> str:
    return re.sub(
        r'"(\w+_ns)": (\d+)',
        lambda m: (
            f'"{m.group(1)[:-3]}": "{clock.text(int(m.group(2)))}"'
            if m.group(1) != "overlap_ns"
            else m.group(0)
        ),
        text,
    )


def _violations_html(
    dicts: list[dict[str, Any]],
    evidence: dict[str, list[_Evidence]],
    result: CheckResult,
    clock: _Clock,
    labels: Mapping[str, str],
) -> str:
    if not dicts:
        return "<p>No violations.</p>"
    items = []
    for i, d in enumerate(dicts, start=1):
        vid = f"v{i}"
        check = str(d.get("check", "?"))
        title = CHECK_TITLES.get(check, check)
        summary = clock.seconds_in(str(d.get("summary", "")))
        for did, label in labels.items():
            summary = summary.replace(did, label)
        link = (
            f' <a href="#ev-{vid}">show on the timeline</a>'
            if evidence.get(vid)
            else (f' <a href="#row-{escape(labels.get(str(d.get("agent")), ""))}">agent row</a>')
        )
        items.append(
            f'<li id="{vid}" data-check="{escape(check)}"><b>{escape(title)}</b> '
            f"<code>{escape(str(d.get('type', '')))}</code>: {escape(summary)}{link}"
            f"<details><summary>evidence</summary>{_field_rows(d, clock, labels)}</details></li>"
        )
    hidden = sum(c.violations for c in result.counts.values()) - len(dicts)
    more = f"<p>{hidden} more violation(s) not listed.</p>" if hidden > 0 else ""
    return f'<h2>Violations</h2><ol class="violations">{"".join(items)}</ol>{more}'


# ---------------------------------------------------------------------------------------------
# faults


@dataclass(frozen=True)
class _Fault:
    fault: str
    detail: str
    start_ns: int
    end_ns: int | None
    nodes: tuple[str, ...]


def _detail_text(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, Mapping):
        parts = [f"{k}={v}" for k, v in detail.items() if k not in ("peers", "pid")]
        return ", ".join(parts)
    return "" if detail is None else str(detail)


def _faults(history: Histories) -> list[_Fault]:
    """Fault windows, the same fault applied to several nodes at once merged into one row."""
    groups: list[tuple[str, str, list[Any]]] = []
    for w in history.fault_windows:  # ordered by start
        detail = _detail_text(w.detail)
        for fault, d, ws in groups:
            if (
                fault == w.fault
                and d == detail
                and w.start_ns - ws[0].start_ns <= GROUP_NS
                and w.node not in {x.node for x in ws}
            ):
                ws.append(w)
                break
        else:
            groups.append((w.fault, detail, [w]))
    out = []
    for fault, detail, ws in groups:
        ends = [w.end_ns for w in ws]
        end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
        nodes = tuple(sorted({w.node for w in ws}))
        out.append(_Fault(fault, detail, min(w.start_ns for w in ws), end, nodes))
    return sorted(out, key=lambda f: (f.start_ns, f.fault))


def _faults_html(faults: list[_Fault], context: ReportContext, clock: _Clock) -> str:
    rows = []
    for i, f in enumerate(faults, start=1):
        end = clock.text(f.end_ns) if f.end_ns is not None else "never healed"
        lasted = f"{(f.end_ns - f.start_ns) / 1e9:.2f} s" if f.end_ns is not None else "-"
        rows.append(
            f'<tr id="fault-{i}" data-fault-row="{escape(f.fault)}">'
            f"<td>{escape(clock.text(f.start_ns))}</td><td>{escape(end)}</td><td>{lasted}</td><td>{escape(f.fault)}</td>"
            f"<td>{escape(', '.join(f.nodes))}</td><td>{escape(f.detail)}</td></tr>"
        )
    applied = (
        '<table id="faults"><tr><th>from</th><th>to</th><th>lasted</th><th>fault</th>'
        "<th>nodes</th><th>detail</th></tr>" + "".join(rows) + "</table>"
        if rows
        else '<p id="faults">No faults were applied.</p>'
    )
    planned = ""
    if context.schedule:
        steps = []
        for s in context.schedule:
            args = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("at_s", "action"))
            at = s.get("at_s")
            at_text = f"{float(at):.2f} s" if isinstance(at, int | float) else "?"
            steps.append(
                f'<tr data-step="{escape(str(s.get("action")))}"><td>{at_text}</td>'
                f"<td>{escape(str(s.get('action')))}</td><td>{escape(args)}</td></tr>"
            )
        planned = (
            '<h3>Schedule (planned)</h3><table id="schedule"><tr><th>at</th><th>step</th>'
            "<th>arguments</th></tr>" + "".join(steps) + "</table>"
        )
    return f"<h2>Faults</h2>{applied}{planned}"


# ---------------------------------------------------------------------------------------------
# timelines


@dataclass(frozen=True, slots=True)
class _Bar:
    node: str
    agent: str
    epoch: int
    start_ns: int
    end_ns: int
    ticks: int
    violating: bool


def _bars(
    ticks: list[TickEvent], hot: set[tuple[str, str, int, int]], merge_ns: int, *, by: str = "node"
) -> list[_Bar]:
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


def _axis(clock: _Clock, top: int, bottom: float) -> list[str]:
    span_s = (clock.t1 - clock.t0) / 1e9
    step = next((s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120) if span_s / s <= 30), 300)
    first = clock.s(clock.t0)
    k = int(first // step) + (0 if first % step == 0 else 1)
    out = ['<g class="axis">']
    while True:
        sec = k * step
        ns = clock.origin + int(sec * 1e9)
        if ns > clock.t1:
            break
        x = clock.x(ns)
        label = f"{sec:g}s"
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#eee"/>'
            f'<text class="tick-label" data-s="{sec:g}" x="{x:.1f}" y="{top - 8}" '
            f'text-anchor="middle">{label}</text>'
        )
        k += 1
    if clock.t0 <= clock.origin <= clock.t1:
        x = clock.x(clock.origin)
        out.append(
            f'<line class="origin" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom:.1f}" '
            'stroke="#999" stroke-dasharray="4 3"/>'
        )
    out.append("</g>")
    return out


def _hot_ticks(evidence: list[_Evidence], history: Histories) -> set[tuple[str, str, int, int]]:
    spans = {(e.agent, e.node, e.start_ns) for e in evidence if e.end_ns is not None}
    return {
        (t.node, t.agent, t.epoch, t.tick)
        for t in history.ticks
        if (t.agent, t.node, t.start_ns) in spans
    }


def _agent_svg(
    history: Histories,
    clock: _Clock,
    width: int,
    labels: Mapping[str, str],
    node_colours: Mapping[str, str],
    faults: list[_Fault],
    evidence: list[_Evidence],
    hot: set[tuple[str, str, int, int]],
) -> str:
    agents = _by_label(history.agents, labels)
    fault_top = AXIS_H
    row_y = {a: AXIS_H + FAULT_ROW_H + 6 + i * ROW_H for i, a in enumerate(agents)}
    height = AXIS_H + FAULT_ROW_H + 6 + ROW_H * max(1, len(agents)) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline-agents" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="timeline by agent">',
        *_axis(clock, AXIS_H, height - 10),
        f'<text x="4" y="{fault_top + 14}">faults</text>',
    ]
    for i, f in enumerate(faults, start=1):
        end = f.end_ns if f.end_ns is not None else clock.t1
        x0 = clock.x(f.start_ns)
        out.append(
            f'<g class="fault-band" data-fault="{escape(f.fault)}"><a href="#fault-{i}">'
            f'<rect x="{x0:.1f}" y="{fault_top}" width="{max(clock.x(end) - x0, 2):.1f}" '
            f'height="{FAULT_ROW_H - 4}" fill="#f5a623" fill-opacity="0.35">'
            f"<title>{escape(f.fault)} {escape(f.detail)} on {escape(', '.join(f.nodes))}: "
            f"{clock.text(f.start_ns)} → "
            f"{clock.text(f.end_ns) if f.end_ns is not None else 'never healed'}</title></rect>"
            f'<text x="{x0 + 2:.1f}" y="{fault_top + 12}" fill="#a15c00">{escape(f.fault)}</text>'
            "</a></g>"
        )
    for a in agents:
        y = row_y[a]
        label = labels[a]
        out.append(
            f'<g class="row" id="row-{escape(label)}" data-row="{escape(label)}">'
            f'<rect x="{LABEL_W}" y="{y}" width="{width - LABEL_W - 10}" height="{ROW_H - 6}" '
            f'fill="#fafafa" stroke="#ddd"/><text x="4" y="{y + ROW_H / 2}">'
            f"<title>{escape(a)}</title>{escape(label)}</text></g>"
        )
    merge_ns = max(1, (clock.t1 - clock.t0) // max(1, width - LABEL_W))
    for b in _bars(history.ticks, hot, merge_ns):
        y = row_y[b.agent] + 2
        cls = "abar violation" if b.violating else "abar"
        stroke = ' stroke="#c62828" stroke-width="2"' if b.violating else ""
        x0 = clock.x(b.start_ns)
        out.append(
            f'<rect class="{cls}" data-agent="{escape(labels[b.agent])}" '
            f'data-node="{escape(b.node)}" x="{x0:.1f}" y="{y}" '
            f'width="{max(clock.x(b.end_ns) - x0, 1.5):.1f}" height="{ROW_H - 10}" '
            f'fill="{node_colours.get(b.node, "#999")}"{stroke}><title>{escape(labels[b.agent])} '
            f"on {escape(b.node)}, epoch {b.epoch}: {b.ticks} tick(s), "
            f"{clock.text(b.start_ns)} – {clock.text(b.end_ns)}</title></rect>"
        )
    for h in history.handoffs:
        if h.step != TARGET_STEP or h.agent not in row_y:
            continue
        x = clock.x(h.mono_ns)
        y = row_y[h.agent]
        out.append(
            f'<line class="ahandoff" data-agent="{escape(labels[h.agent])}" x1="{x:.1f}" '
            f'y1="{y - 2}" x2="{x:.1f}" y2="{y + ROW_H - 4}" stroke="#333" stroke-width="1.5">'
            f"<title>{escape(labels[h.agent])} committed on {escape(h.node)} (epoch {h.epoch}) "
            f"at {clock.text(h.mono_ns)}</title></line>"
        )
    seen: set[str] = set()
    for e in evidence:
        if e.agent not in row_y:
            continue
        y = row_y[e.agent]
        anchor = f' id="ev-{e.vid}"' if e.vid not in seen else ""
        seen.add(e.vid)
        x0 = clock.x(max(clock.t0, min(e.start_ns, clock.t1)))
        if e.end_ns is not None:
            shape = (
                f'<rect class="evidence" data-violation="{e.vid}"{anchor} x="{x0 - 2:.1f}" '
                f'y="{y - 3}" width="{max(clock.x(e.end_ns) - x0, 2) + 4:.1f}" '
                f'height="{ROW_H}" fill="none" stroke="#c62828" stroke-width="2">'
            )
        else:
            shape = (
                f'<rect class="evidence" data-violation="{e.vid}"{anchor} x="{x0 - 1.5:.1f}" '
                f'y="{y - 3}" width="3" height="{ROW_H}" fill="#c62828">'
            )
        where = f" on {e.node}" if e.node else ""
        out.append(
            f'<a href="#{e.vid}">{shape}<title>violation {e.vid[1:]}: {escape(e.what)}{where} '
            f"at {clock.text(e.start_ns)}</title></rect></a>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _node_svg(
    history: Histories,
    clock: _Clock,
    width: int,
    labels: Mapping[str, str],
    colours: Mapping[str, str],
    bad_nodes: set[str],
    hot: set[tuple[str, str, int, int]],
) -> str:
    nodes = list(history.nodes)
    plot_w = width - LABEL_W - 10
    lane_y = {n: AXIS_H + i * LANE_H for i, n in enumerate(nodes)}
    height = AXIS_H + LANE_H * len(nodes) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline-nodes" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="timeline">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#333"/></marker></defs>',
        *_axis(clock, AXIS_H, height - 10),
    ]
    for n in nodes:
        y = lane_y[n]
        stroke = ' stroke="#c62828" stroke-width="2"' if n in bad_nodes else ' stroke="#ddd"'
        out.append(
            f'<g class="lane" data-lane="{escape(n)}"><rect x="{LABEL_W}" y="{y}" '
            f'width="{plot_w}" height="{LANE_H - 6}" fill="#fafafa"{stroke}/>'
            f'<text x="4" y="{y + LANE_H / 2}">{escape(n)}</text></g>'
        )
    for w in history.fault_windows:
        if w.node not in lane_y:
            continue
        end = w.end_ns if w.end_ns is not None else clock.t1
        y = lane_y[w.node]
        detail = _detail_text(w.detail)
        label = w.fault + (f" {detail}" if detail else "")
        out.append(
            f'<g class="fault" data-node="{escape(w.node)}" data-fault="{escape(w.fault)}">'
            f'<rect x="{clock.x(w.start_ns):.1f}" y="{y}" '
            f'width="{max(clock.x(end) - clock.x(w.start_ns), 1):.1f}" '
            f'height="{LANE_H - 6}" fill="#f5a623" fill-opacity="0.18"><title>{escape(label)}: '
            f"{clock.text(w.start_ns)} → "
            f"{clock.text(w.end_ns) if w.end_ns is not None else 'never healed'}</title></rect>"
            f'<text x="{clock.x(w.start_ns) + 2:.1f}" y="{y + LANE_H - 9}" fill="#a15c00">'
            f"{escape(label[:40])}</text></g>"
        )
    merge_ns = max(1, (clock.t1 - clock.t0) // max(1, plot_w))
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
            f'<rect{outline} data-agent="{escape(b.agent)}" data-label="{escape(labels[b.agent])}" '
            f'data-node="{escape(b.node)}" data-epoch="{b.epoch}" data-ticks="{b.ticks}" '
            f'x="{clock.x(b.start_ns):.1f}" y="{y:.1f}" '
            f'width="{max(clock.x(b.end_ns) - clock.x(b.start_ns), 1.5):.1f}" '
            f'height="{max(band - 2, 2):.1f}" fill="{colours[b.agent]}"><title>'
            f"{escape(labels[b.agent])} ({escape(b.agent)}) on {escape(b.node)} epoch {b.epoch}: "
            f"{b.ticks} tick(s)</title></rect>"
        )
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
            f'data-to="{escape(h.node)}" x1="{clock.x(src[1]):.1f}" y1="{y1:.1f}" '
            f'x2="{clock.x(h.mono_ns):.1f}" '
            f'y2="{y2:.1f}" stroke="{colours.get(h.agent, "#333")}" stroke-width="1.5" '
            f'marker-end="url(#arrow)"><title>{escape(labels.get(h.agent, h.agent))}: '
            f"{escape(src[0])} → {escape(h.node)} (epoch {h.epoch}) at "
            f"{clock.text(h.mono_ns)}</title></line>"
        )
    out.append("</svg>")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# tables


def _summary(
    history: Histories, result: CheckResult, labels: Mapping[str, str], clock: _Clock
) -> str:
    rows = []
    for name, c in result.counts.items():
        status = "skipped" if c.skipped else ("ok" if c.violations == 0 else "VIOLATED")
        cls = ' class="bad"' if c.violations else ""
        rows.append(
            f'<tr data-check-row="{escape(name)}"><td>{escape(CHECK_TITLES.get(name, name))}</td>'
            f"<td{cls}>{status}</td><td>{c.checked}</td>"
            f"<td>{c.violations}</td><td>{escape(clock.seconds_in(c.note))}</td></tr>"
        )
    checks = (
        "<table><tr><th>check</th><th>status</th><th>checked</th><th>violations</th><th>note</th>"
        "</tr>" + "".join(rows) + "</table>"
    )
    states = final_states(history, None)
    per_agent = []
    for agent in _by_label(history.agents, labels):
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
            f"<tr><td>{_agent_tag(agent, labels)}</td><td><code>{escape(agent)}</code></td>"
            f"<td>{len(ticks)}</td><td>{sum(t.cost for t in ticks)}</td>"
            f"<td>{escape(', '.join(nodes))}</td><td>{len(epochs)}</td><td>{escape(fin)}</td></tr>"
        )
    agents = (
        '<table id="agents"><tr><th>agent</th><th>DID</th><th>ticks</th><th>cost µ</th>'
        "<th>nodes</th><th>epochs</th><th>final authority</th></tr>"
        + "".join(per_agent)
        + "</table>"
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


def render_report(
    history: Histories,
    result: CheckResult,
    *,
    title: str,
    context: ReportContext | None = None,
) -> str:
    """The whole report as one HTML document (no external resources)."""
    context = context or ReportContext()
    labels = _labels(history, context)
    colours = {
        a: PALETTE[i % len(PALETTE)] for i, a in enumerate(_by_label(history.agents, labels))
    }
    node_colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(history.nodes)}
    span_s = max(history.end_ns - history.start_ns, 1) / 1e9
    width = int(min(MAX_WIDTH, max(MIN_WIDTH, LABEL_W + 10 + span_s * PX_PER_S)))
    clock = _Clock(history, context.origin_ns, width - LABEL_W - 10)

    dicts = _violation_dicts(result)
    evidence = {f"v{i}": _evidence(f"v{i}", d) for i, d in enumerate(dicts, start=1)}
    all_evidence = [e for es in evidence.values() for e in es]
    hot = _hot_ticks(all_evidence, history)
    bad_nodes = {e.node for e in all_evidence if e.node}
    for v in result.violations:
        with contextlib.suppress(Exception):  # a check without node evidence
            bad_nodes |= set(v.nodes())
    faults = _faults(history)

    zero = (
        "t = 0 s is the start of the fault schedule"
        if context.origin_ns is not None
        else "t = 0 s is the first event"
    )
    agent_legend = "".join(
        f'<span data-legend="{escape(a)}"><i style="background:{c}"></i>'
        f"{_agent_tag(a, labels)}</span>"
        for a, c in colours.items()
    )
    node_legend = "".join(
        f'<span data-node-legend="{escape(n)}"><i style="background:{c}"></i>{escape(n)}</span>'
        for n, c in node_colours.items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<p>{escape(title)}</p>"
        f'<h1 id="verdict" class="{result.verdict.lower()}">{result.verdict}</h1>'
        f"<p>{result.events} events from {len(history.nodes)} node(s), "
        f"{len(history.agents)} agent(s) over {span_s:.1f} s; "
        f"checked in {result.elapsed_s * 1000:.1f} ms. Times are in seconds; {zero}.</p>"
        f"{_violations_html(dicts, evidence, result, clock, labels)}"
        f"{_faults_html(faults, context, clock)}"
        f"<h2>Summary</h2>{_summary(history, result, labels, clock)}"
        f'<h2>Timeline by agent</h2><div class="legend">nodes: {node_legend}</div>'
        f'<div class="scroll">'
        f"{_agent_svg(history, clock, width, labels, node_colours, faults, all_evidence, hot)}"
        "</div><p>One row per agent; bar colour: the node it ticked on; black marks: handoffs "
        "committed; top row: faults; red: evidence of a violation (click it for the "
        "violation).</p>"
        f'<h2>Timeline by node</h2><div class="legend">agents: {agent_legend}</div>'
        f'<div class="scroll">'
        f"{_node_svg(history, clock, width, labels, colours, bad_nodes, hot)}</div>"
        "<p>Bars: tick intervals (consecutive ticks merged), one colour per agent; arrows: "
        "handoffs from the source's retire to the target's commit; shaded: fault windows; "
        "red outline: named by a violation.</p></body></html>\n"
    )


__all__ = ["ReportContext", "load_context", "render_report"]
