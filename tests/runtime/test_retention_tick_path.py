"""Retention is wired into the tick path: an agent that ticks for long keeps a bounded lineage."""

from __future__ import annotations

from pathlib import Path

import pytest

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.node.config import ConfigError, NodeConfig, load_node_config
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.loader import LaunchRequest
from igor_p2p.runtime.local import LaunchHere, LocalRunOptions, run_local
from igor_p2p.runtime.scheduler import SchedulerConfig
from igor_p2p.runtime.services import RuntimeConfig
from igor_p2p.runtime.ticksink import COMPACT_EVERY
from igor_p2p.store.retention import DEFAULT_KEEP_LAST, InvalidRetention, parse_retention
from igor_p2p.store.sqlite import Store

TICKS = 4 * COMPACT_EVERY + 10


async def test_a_long_lived_agent_keeps_a_bounded_lineage_under_the_default_retention(
    tmp_path: Path,
) -> None:
    data = DataDir(tmp_path / "node")
    options = LocalRunOptions(
        data=data,
        runtime=RuntimeConfig(),
        scheduler=SchedulerConfig(idle_interval_s=0.0, busy_interval_s=0.0, checkpoint_every=1),
        ticks=TICKS,
    )
    request = LaunchRequest(
        load_agent_source("counter"), load_agent_manifest("counter").canonical_bytes, 10**12
    )
    result = await run_local(options, LaunchHere(request), lambda _event, _fields: None)
    assert result.last_tick == TICKS
    store = Store.open(data.database)
    try:
        rows = store.lineage_index(result.did)
        blobs = store.lineage(result.did)
        stored_bytes = store.lineage_bytes(result.did)
    finally:
        store.close()
    checkpoints = [r for r in rows if r.kind in ("TICK", "HANDOFF", "FINAL")]
    # The keep-set (the last DEFAULT_KEEP_LAST checkpoints) plus at most the ticks committed
    # since the last compaction; the genesis stays.
    assert len(checkpoints) <= DEFAULT_KEEP_LAST + COMPACT_EVERY
    assert rows[0].kind == "GENESIS" and rows[-1].tick == TICKS
    assert any(r.gap for r in rows), "compaction left no gap: it never ran"
    largest = max(len(b) for b in blobs)
    assert stored_bytes <= (DEFAULT_KEEP_LAST + COMPACT_EVERY + 1) * largest
    report = verify_lineage(blobs, expected_agent=result.did, ordered=True)
    assert report.valid, report.problems


async def test_retain_all_keeps_every_checkpoint_of_a_long_lived_agent(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "node")
    options = LocalRunOptions(
        data=data,
        runtime=RuntimeConfig(retention=parse_retention("all")),
        scheduler=SchedulerConfig(idle_interval_s=0.0, busy_interval_s=0.0, checkpoint_every=1),
        ticks=TICKS,
    )
    request = LaunchRequest(
        load_agent_source("counter"), load_agent_manifest("counter").canonical_bytes, 10**12
    )
    result = await run_local(options, LaunchHere(request), lambda _event, _fields: None)
    store = Store.open(data.database)
    try:
        rows = store.lineage_index(result.did)
    finally:
        store.close()
    assert [r.tick for r in rows if r.kind == "TICK"] == list(range(1, TICKS + 1))
    assert not any(r.gap for r in rows)


def test_a_retention_is_a_positive_count_or_all() -> None:
    assert parse_retention("all").retain_all
    assert parse_retention(" 64 ").keep_last == 64
    for bad in ("0", "-3", "many", "", "1e3"):
        with pytest.raises(InvalidRetention):
            parse_retention(bad)


def test_the_node_config_takes_retain_as_a_number_or_all() -> None:
    assert NodeConfig().retention.keep_last == DEFAULT_KEEP_LAST
    assert load_node_config(flags={"retain": "all"}).retention.retain_all
    assert load_node_config(env={"IGOR_RETAIN": "32"}).retention.keep_last == 32
    with pytest.raises(ConfigError, match="retain"):
        NodeConfig(retain="none")
