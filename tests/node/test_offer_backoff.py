"""A source whose OFFERs a target refuses RATE_LIMITED (the per-peer offer bucket, the seed's
A3 defence) waits its turn and sends them again: moving many agents at once to one node ends
with every one of them moved, not half of them aborted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.net.faults import FaultGate, MessageFaults
from igor_p2p.net.keys import peer_id_from_seed
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.node import Node, _also_on_heal
from igor_p2p.runtime.loader import LaunchRequest

AGENTS = 6
OFFERS_PER_S = 1.0
"""The target's bucket: a burst of 5 offers, then one a second, so one of the six must wait."""


def _config(root: Path, name: str, boot: tuple[str, ...] = (), **extra: Any) -> NodeConfig:
    return NodeConfig(
        data_dir=root / name,
        name=name,
        listen=("/ip4/127.0.0.1/tcp/0",),
        bootstrap=boot,
        idle_interval_s=0.05,
        busy_interval_s=0.05,
        announce_interval_s=0.5,
        log_level="ERROR",
        **extra,
    )


async def test_offers_refused_for_rate_are_sent_again_and_every_agent_moves(
    tmp_path: Path,
) -> None:
    counter = LaunchRequest(
        load_agent_source("counter"), load_agent_manifest("counter").canonical_bytes, 10**9
    )
    async with trio.open_nursery() as nursery:
        source = await nursery.start(Node(_config(tmp_path, "a")).run)
        boot = ((await source.api.status())["addrs"][0],)
        target = await nursery.start(
            Node(_config(tmp_path, "b", boot, offers_per_s=OFFERS_PER_S)).run
        )
        with trio.fail_after(30):
            while not (source.api.peers.up_peers() and target.api.peers.up_peers()):
                await trio.sleep(0.05)
        agents = []
        for _ in range(AGENTS):
            launched = await source.api.launch(counter)
            agents.append(str(launched["agent"]))
        to = bytes(target.running.core.me)
        outcomes: dict[str, str] = {}

        async def move(agent: str) -> None:
            outcome = await source.running.core.migrate(agent, to)
            outcomes[agent] = f"{outcome.result.value}: {outcome.reason}"

        with trio.fail_after(90):
            async with trio.open_nursery() as moves:
                for agent in agents:
                    moves.start_soon(move, agent)
        refused = (await target.api.status())["limits"]["offers_refused"]
        source.stop()
        target.stop()
    assert refused >= 1, "the target's offer bucket never refused: the test proves nothing"
    assert sorted(outcomes.values()) == ["TRANSFERRED: "] * AGENTS, outcomes


async def test_the_fault_gate_tells_the_core_of_a_heal_and_of_lifted_message_faults() -> None:
    # A request sent while a block or a message fault held may be lost (CI, testnet soak seed
    # 1003: an OFFER dropped before clear_faults waited out its 20 s timeout): each lifted
    # fault is a network change, so waiting requests are sent again at once.
    changes: list[int] = []
    gate = FaultGate()
    gate.on_fault = _also_on_heal(None, lambda: changes.append(1))
    await gate.block([peer_id_from_seed(bytes(32))])
    gate.set_message_faults(MessageFaults(drop=0.5, seed=1))
    assert changes == []
    await gate.heal()
    assert len(changes) == 1
    gate.clear_message_faults()
    assert len(changes) == 2
