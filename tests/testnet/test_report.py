import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from testnet_events import auth, fault, handoff, tick

from testnet.checker import AgentStore, CheckConfig, StoreSnapshot, check
from testnet.history import merge, read_histories
from testnet.report import ReportContext, load_context, render_report
from testnet.synthetic import SyntheticSpec, synthesize

CHROMIUM = Path("/usr/bin/chromium")
RECORDED = Path(__file__).parent / "fixtures" / "recorded-run"
"""``igor testnet run partition-during-migration``: histories, run.json, the agents' labels and
the stores' lineage rows (stores.json.gz)."""


def recorded_stores() -> dict[str, StoreSnapshot]:
    raw = json.loads(gzip.decompress((RECORDED / "stores.json.gz").read_bytes()))
    return {
        node: StoreSnapshot(
            node,
            {
                agent: AgentStore(
                    tuple(map(tuple, a["entries"])), a["authority_state"], a["reason"]
                )
                for agent, a in agents.items()
            },
        )
        for node, agents in raw.items()
    }


def passing_page() -> tuple[str, list[str], list[str]]:
    per_node = synthesize(SyntheticSpec(agents=3, ticks_per_epoch=(4, 4, 4), seed=1))
    per_node["n1"] += [
        fault("n1", 1_000_000_100, "partition", "halves"),
        fault("n1", 1_002_000_000, "heal"),
    ]
    h = merge(per_node.values())
    r = check(h, config=CheckConfig(liveness_bound_s=0))
    assert r.ok
    return render_report(h, r, title="demo run"), list(h.nodes), list(h.agents)


def failing_page() -> str:
    h = merge(
        [
            [tick("n1", 0, 10), auth("n1", 0, "ACTIVE_OWNER")],
            [tick("n2", 5, 15, epoch=2), handoff("n2", 20, "committed")],
        ]
    )
    r = check(h, config=CheckConfig(check_liveness=False))
    return render_report(h, r, title="bad <run>")


def recorded_dir(tmp_path: Path) -> Path:
    """The recorded run unpacked as the testnet left it (history.jsonl per node)."""
    out = tmp_path / "run"
    for gz in RECORDED.glob("*/history.jsonl.gz"):
        (out / gz.parent.name).mkdir(parents=True)
        (out / gz.parent.name / "history.jsonl").write_bytes(gzip.decompress(gz.read_bytes()))
    for name in ("run.json", "testnet.json"):
        shutil.copy(RECORDED / name, out / name)
    return out


def recorded_page(tmp_path: Path) -> tuple[str, dict, dict[str, str]]:
    root = recorded_dir(tmp_path)
    h = merge(read_histories(root))
    r = check(h, stores=recorded_stores(), config=CheckConfig(liveness_bound_s=4))
    assert r.ok, r.to_text()
    page = render_report(h, r, title="recorded", context=load_context(root))
    run = json.loads((root / "run.json").read_text())
    labels = json.loads((root / "testnet.json").read_text())["agents"]
    return page, run, labels


def dom_of(page: str, tmp_path: Path) -> str:
    html = tmp_path / "report.html"
    html.write_text(page, encoding="utf-8")
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        html.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


def test_page_has_a_verdict_one_lane_per_node_and_bars_per_agent():
    page, nodes, agents = passing_page()
    assert re.search(r'<h1 id="verdict" class="pass">PASS</h1>', page)
    lanes = re.findall(r'data-lane="([^"]+)"', page)
    assert lanes == nodes
    for a in agents:
        assert re.search(rf'class="bar" data-agent="{a}"', page), a
        assert f'data-legend="{a}"' in page
    assert 'class="handoff"' in page and 'data-fault="partition"' in page
    # self-contained: no scripts, no external resources
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page


def test_violations_are_listed_and_outlined_in_red():
    page = failing_page()
    assert '<h1 id="verdict" class="fail">FAIL</h1>' in page
    assert "OverlapViolation" in page and "bad &lt;run&gt;" in page
    assert page.count('class="bar violation"') == 2


def test_each_violation_links_to_its_evidence_on_the_timeline_and_back():
    page = failing_page()
    item = re.search(r'<li id="v1" data-check="overlap">.*?</li>', page, re.S)
    assert item is not None
    assert 'href="#ev-v1"' in item.group(0)
    evidence = re.findall(r'<a href="#v1"><rect class="evidence" data-violation="v1"', page)
    assert len(evidence) == 2, "both overlapping ticks are marked"
    assert page.count('id="ev-v1"') == 1


def test_a_new_check_renders_without_changes_to_the_report():
    """The report reads violations through to_dict(): check name, summary, fields."""
    from dataclasses import dataclass
    from typing import ClassVar

    from testnet.checker import CheckCount, CheckResult, Violation

    @dataclass(frozen=True)
    class WitnessViolation(Violation):
        check: ClassVar[str] = "witness"
        seen_ns: int
        span: dict

        def summary(self) -> str:
            return f"agent {self.agent}: witnessed twice at {self.seen_ns}"

    t0 = 5_000 * 10**9  # monotonic ns: the machine's uptime
    h = merge([[tick("n1", t0, t0 + 10**9, agent="d1")]])
    v = WitnessViolation("d1", t0 + 5 * 10**8, {"node": "n1", "start_ns": t0, "end_ns": t0 + 10**9})
    r = CheckResult((v,), {"witness": CheckCount(1, 1)}, 1, 0.0)
    page = render_report(h, r, title="new check")
    assert '<li id="v1" data-check="witness">' in page
    assert "witnessed twice at 0.50 s" in page, "times in the summary are written in seconds"
    assert 'data-violation="v1"' in page and 'href="#ev-v1"' in page
    assert 'data-check-row="witness"' in page


def test_recorded_run_shows_agents_by_label_with_the_did_on_hover(tmp_path):
    page, _run, labels = recorded_page(tmp_path)
    assert sorted(re.findall(r'data-row="([^"]+)"', page)) == sorted(labels)
    for label, did in labels.items():
        assert f'<abbr title="{did}">{label}</abbr>' in page


def test_recorded_run_lists_the_fault_schedule_with_times_in_seconds(tmp_path):
    page, run, _ = recorded_page(tmp_path)
    planned = re.findall(r'<tr data-step="([^"]+)"><td>([\d.]+) s</td>', page)
    assert planned == [(s["action"], f"{s['at_s']:.2f}") for s in run["schedule"]]
    applied = re.findall(
        r'<tr id="fault-\d+" data-fault-row="partition"><td>([-\d.]+) s</td>', page
    )
    wanted = [s["at_s"] for s in run["schedule"] if s["action"] == "partition"]
    assert len(applied) == len(wanted)
    for at_s, shown in zip(wanted, applied, strict=True):
        # the nemesis tells the nodes in turn: the window opens within a second of the step
        assert at_s <= float(shown) < at_s + 1.0, (at_s, shown)
    assert not re.search(r"\d{12,}", re.sub(r"<code>.*?</code>|title=\"[^\"]*\"", "", page))


def test_recorded_run_time_axis_counts_from_the_start_of_the_schedule(tmp_path):
    """The run's own log says "3.00s partition": the axis must agree (it started at the first
    node's start event before, about 3-6 s earlier than the schedule's zero)."""
    page, run, _ = recorded_page(tmp_path)
    svg = re.search(r'<svg[^>]*id="timeline-agents".*?</svg>', page, re.S).group(0)
    # (seconds, x) of the axis labels give the scale
    pairs = [(float(s), float(x)) for s, x in re.findall(r'data-s="([-\d.]+)" x="([\d.]+)"', svg)]
    assert len(pairs) >= 2
    (s0, x0), (s1, x1) = pairs[0], pairs[-1]
    px_per_s = (x1 - x0) / (s1 - s0)
    origin_x = float(re.search(r'class="origin" x1="([\d.]+)"', svg).group(1))
    assert origin_x == pytest.approx(x0 - s0 * px_per_s, abs=0.5)
    first = next(s for s in run["schedule"] if s["action"] == "partition")
    band = re.search(r'data-fault="partition"><a href="#fault-1"><rect x="([\d.]+)"', svg)
    band_x = float(band.group(1))
    shown_s = (band_x - origin_x) / px_per_s
    assert first["at_s"] <= shown_s < first["at_s"] + 1.0


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_headless_chromium_dom_shows_verdict_and_lanes(tmp_path):
    page, nodes, _ = passing_page()
    dom = dom_of(page, tmp_path)
    assert re.search(r'id="verdict"[^>]*>PASS<', dom)
    assert re.findall(r'data-lane="([^"]+)"', dom) == nodes


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_headless_chromium_renders_the_recorded_run_with_labels_faults_and_axis(tmp_path):
    page, run, labels = recorded_page(tmp_path)
    dom = dom_of(page, tmp_path)
    assert re.search(r'id="verdict"[^>]*>PASS<', dom)
    assert sorted(re.findall(r'data-row="([^"]+)"', dom)) == sorted(labels)
    assert 'id="faults"' in dom and 'id="schedule"' in dom
    assert len(re.findall(r'data-step="', dom)) == len(run["schedule"])
    assert re.search(r'class="tick-label" data-s="0"', dom)
    assert "t = 0 s is the start of the fault schedule" in dom


def test_report_without_a_run_file_counts_from_the_first_event():
    per_node = synthesize(SyntheticSpec(agents=1, ticks_per_epoch=(3,), seed=2))
    h = merge(per_node.values())
    page = render_report(h, check(h), title="t", context=ReportContext())
    assert "t = 0 s is the first event" in page
