"""A node refuses what it cannot hold, keeps listing its agents when one is damaged, and reports
an agent's real state when asked to halt one it does not tick (in-process nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.authority.states import AuthorityState
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.node import Node
from igor_p2p.runtime.capacity import NoCapacity
from igor_p2p.runtime.loader import AgentNotFound, LaunchRequest, NotOwner
from igor_p2p.store.sqlite import Store


def _config(root: Path, **extra: object) -> NodeConfig:
    return NodeConfig(
        data_dir=root / "n",
        name="n",
        listen=("/ip4/127.0.0.1/tcp/0",),
        idle_interval_s=0.05,
        announce_interval_s=0.3,
        **extra,  # type: ignore[arg-type]
    )


COUNTER = LaunchRequest(
    wasm=load_agent_source("counter"),
    manifest=load_agent_manifest("counter").canonical_bytes,
    budget=10**9,
)


async def test_a_launch_beyond_the_memory_budget_is_refused_in_words(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node: Node = await nursery.start(Node(_config(tmp_path, memory_budget_mb=100)).run)
        await node.api.launch(COUNTER)  # a 64 MiB memory cap fits in 100 MiB ...
        with pytest.raises(NoCapacity, match="memory budget"):
            await node.api.launch(COUNTER)  # ... a second one does not
        assert len(node.api.scheduler.agents) == 1
        node.stop()


async def test_one_damaged_agent_does_not_hide_the_others_and_halt_reports_real_states(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        node: Node = await nursery.start(Node(_config(tmp_path)).run)
        healthy = (await node.api.launch(COUNTER))["agent"]
        damaged = (await node.api.launch(COUNTER))["agent"]
        halted = await node.api.halt(damaged, "for the test")
        assert halted["state"] == "HALTED"

        def corrupt_head(store: Store) -> None:
            (head_seq,) = store._conn.execute(
                "SELECT head_seq FROM authority WHERE agent = ?", (damaged,)
            ).fetchone()
            store._conn.execute(
                "UPDATE lineage SET blob = X'c1' WHERE agent = ? AND seq = ?",
                (damaged, head_seq),
            )

        await node.api.services.committer.read(corrupt_head)
        listed = {a["agent"]: a for a in await node.api.agents()}
        assert listed[healthy]["state"] == "ACTIVE_OWNER" and "tick" in listed[healthy]
        assert "unreadable" in listed[damaged]["damaged"]

        with pytest.raises(NotOwner) as caught:
            await node.api.halt(damaged, "again")
        assert caught.value.state is AuthorityState.HALTED
        with pytest.raises(AgentNotFound):
            await node.api.halt("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "x")
        node.stop()
