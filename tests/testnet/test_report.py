import re
import subprocess
from pathlib import Path

import pytest
from testnet_events import auth, fault, handoff, tick

from testnet.checker import CheckConfig, check
from testnet.history import merge
from testnet.report import render_report
from testnet.synthetic import SyntheticSpec, synthesize

CHROMIUM = Path("/usr/bin/chromium")


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
    h = merge(
        [
            [tick("n1", 0, 10), auth("n1", 0, "ACTIVE_OWNER")],
            [tick("n2", 5, 15, epoch=2), handoff("n2", 20, "committed")],
        ]
    )
    r = check(h, config=CheckConfig(check_liveness=False))
    page = render_report(h, r, title="bad <run>")
    assert '<h1 id="verdict" class="fail">FAIL</h1>' in page
    assert "OverlapViolation" in page and "bad &lt;run&gt;" in page
    assert page.count('class="bar violation"') == 2


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_headless_chromium_dom_shows_verdict_and_lanes(tmp_path):
    page, nodes, _ = passing_page()
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
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    assert re.search(r'id="verdict"[^>]*>PASS<', dom)
    assert re.findall(r'data-lane="([^"]+)"', dom) == nodes
