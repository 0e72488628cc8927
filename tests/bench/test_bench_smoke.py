"""`make bench` cannot silently rot: the foundation area runs in --quick mode and its JSON has
every expected row with numeric figures and ratios."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from igor_p2p.bench import BenchArea, BenchError, RunOptions, discover, register, run_bench

FOUNDATION_ROWS = {
    "tick_overhead",
    "scheduler_ticks_per_s",
    "scheduler_durable_ticks_per_s",
    "durable_commits_per_s",
    "snapshot_restore_1m",
    "snapshot_restore_16m",
}
ROW_KEYS = {
    "area",
    "name",
    "value",
    "unit",
    "baseline_name",
    "baseline_value",
    "ratio",
    "target",
    "met",
}


def test_quick_foundation_run_writes_every_row_with_numeric_ratios(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run_bench(RunOptions(only=["foundation"], quick=True, out=out, show_table=False))
    document = json.loads(out.read_text())
    assert document["quick"] is True
    assert document["areas"] == ["foundation"]
    assert isinstance(document["machine"], dict) and document["machine"]["cpus"]
    assert isinstance(document["timestamp"], str)
    rows = {r["name"]: r for r in document["rows"]}
    assert set(rows) == FOUNDATION_ROWS
    for name, row in rows.items():
        assert set(row) >= ROW_KEYS, name
        assert row["area"] == "foundation"
        for key in ("value", "baseline_value", "ratio"):
            assert isinstance(row[key], (int, float)) and not isinstance(row[key], bool), name
            assert math.isfinite(row[key]) and row[key] > 0, (name, key, row[key])
        assert row["ratio"] == pytest.approx(row["value"] / row["baseline_value"])
        assert row["met"] in (True, False, None)
        assert isinstance(row["baseline_name"], str) and row["baseline_name"]
    for name in FOUNDATION_ROWS - {"snapshot_restore_1m", "snapshot_restore_16m"}:
        assert rows[name]["target"] and isinstance(rows[name]["met"], bool), name
    assert rows["durable_commits_per_s"]["details"]["integrity_problems"] == 0


def test_unknown_area_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError):
        run_bench(RunOptions(only=["no-such-area"], out=tmp_path / "r.json", show_table=False))
    assert not (tmp_path / "r.json").exists()


def test_areas_are_discovered_and_names_are_unique() -> None:
    areas = discover()
    assert "foundation" in areas
    with pytest.raises(BenchError):
        register(BenchArea("foundation", lambda ctx: []))


HANDOFF_ROWS = (
    "lower bound (2.5 RTT + 3 fsync)",
    "handoff pause p50, 64 KiB state",
    "handoff pause p99, 64 KiB state",
    "handoff pause p50, 1 MiB state",
    "cold migration pause p50 (dial included)",
    "migrations/s, 10 agents leaving one node at once",
    "pause p50, 2,000-tick agent to nodes that never held it",
    "bytes sent moving the 2,000-tick agent to a fresh node",
    "store size per agent after 2,000 ticks (default retention)",
)


@pytest.mark.e2e
def test_quick_handoff_run_writes_every_row_with_its_phases(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run_bench(RunOptions(only=["handoff"], quick=True, out=out, show_table=False))
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == set(HANDOFF_ROWS)
    for name, row in rows.items():
        for key in ("value", "baseline_value", "ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (name, key, row[key])
    bound = rows["lower bound (2.5 RTT + 3 fsync)"]["details"]
    assert bound["rtt_ms"] > 0 and bound["fsync_ms"] > 0 and bound["mib_stream_ms"] > 0
    pause = rows["handoff pause p50, 64 KiB state"]["details"]
    assert pause["hops"] >= 5
    assert {
        "snapshot+sign_ms",
        "target prepare write_ms",
        "accept round_ms",
        "first tick_ms",
    } <= set(pause)
    moved = rows["bytes sent moving the 2,000-tick agent to a fresh node"]["details"]
    assert moved["handoff_bytes"] > 0 and moved["consensus_bytes"] > 0
