"""An agent older than any OFFER could once carry moves to a node that never held it, and the
copy there verifies: the handoff's size is the state plus the custody hops, not the ticks
(in-process nodes, so the bytes each message type carried can be read; the same move between
real processes: ``tests/e2e/test_long_lived.py``)."""

from __future__ import annotations

from pathlib import Path

import trio

from igor_p2p.bench._lineage import build_agents
from igor_p2p.bench.handoff import (
    key_of,
    libp2p_transport,
    start_node,
    ticking,
    wait_for_peers,
)
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.runtime.datadir import DataDir

TICKS = 20_001


async def test_an_agent_with_20001_committed_ticks_moves_to_a_fresh_node_and_verifies_there(
    tmp_path: Path,
) -> None:
    witnesses = tuple(DataDir(tmp_path / n).ensure().node_keypair().public_key for n in "ab")
    (aged,) = await build_agents(DataDir(tmp_path / "a"), "counter", [TICKS], witnesses)
    async with trio.open_nursery() as nursery:
        a = await start_node(tmp_path, "a", nursery)
        boot = ((await a.api.status())["addrs"][0],)
        b = await start_node(tmp_path, "b", nursery, boot)
        fresh = await start_node(tmp_path, "fresh", nursery, boot)
        await wait_for_peers([a, b, fresh])
        await ticking(a, aged.did, timeout=60)
        stats = libp2p_transport(a).stats
        offered_before = stats["request_bytes:OFFER"]

        outcome = await a.running.core.migrate(aged.did, key_of(fresh))

        assert outcome.result.value == "TRANSFERRED", outcome
        await ticking(fresh, aged.did, timeout=60)
        offered = stats["request_bytes:OFFER"] - offered_before
        lineage = await fresh.api.store.lineage(aged.did)
        report = verify_lineage(lineage, expected_agent=aged.did, ordered=True)
        hosted = fresh.api.scheduler.agents[aged.did]
        for node in (a, b, fresh):
            node.stop()
    assert report.valid, report.problems
    assert report.custodian == key_of(fresh)
    assert report.last_tick is not None and report.last_tick >= TICKS
    # The OFFER carried the custody and one checkpoint, not 20,001 of them.
    assert offered < 20 * aged.checkpoint_bytes
    assert len(lineage) < 20
    assert hosted.head.tick >= TICKS
