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
