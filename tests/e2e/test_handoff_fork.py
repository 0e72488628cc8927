"""MC-9: two different owners claiming the same agent at the same epoch both stop.

The fork is built in-process: whoever holds an agent's key can sign a second genesis, so a
launcher that reuses the key on another node creates two owners of epoch 1 with valid chains.
Their claims meet (gossip, witness answers) and both nodes must enter RECOVERY_REQUIRED with a
reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import trio

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.authority.states import AuthorityState
from igor_p2p.lineage.identity import Keypair, load_key_file
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.node import Node
from igor_p2p.runtime.loader import LaunchRequest

FAST = dict(
    listen=("/ip4/127.0.0.1/tcp/0",),
    idle_interval_s=0.05,
    announce_interval_s=0.2,
    recover_interval_s=0.3,
)


async def _row_state(node: Node, did: str) -> tuple[AuthorityState | None, str]:
    record = await node.api.store.record(did)
    if record is None or not isinstance(record.state, AuthorityState):
        return None, ""
    return record.state, record.detail or (record.reason.value if record.reason else "")


async def test_two_owners_of_one_epoch_both_enter_recovery_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = LaunchRequest(
        wasm=load_agent_source("counter"),
        manifest=load_agent_manifest("counter").canonical_bytes,
        budget=10**9,
    )
    with tempfile.TemporaryDirectory(dir="/tmp") as root:
        a_dir, b_dir = Path(root, "a"), Path(root, "b")
        async with trio.open_nursery() as nursery:
            a: Node = await nursery.start(Node(NodeConfig(data_dir=a_dir, name="a", **FAST)).run)
            boot = ((await a.api.status())["addrs"][0],)
            b: Node = await nursery.start(
                Node(NodeConfig(data_dir=b_dir, name="b", bootstrap=boot, **FAST)).run
            )
            with trio.fail_after(15):
                while not b.api.peers.up_peers() or not a.api.peers.up_peers():
                    await trio.sleep(0.05)
            agent = await a.api.launch(request)
            did = agent["agent"]
            key = load_key_file(a.api.services.data.agent_key_path(did))
            monkeypatch.setattr(Keypair, "generate", staticmethod(lambda: key))
            forked = await b.api.launch(request)  # a second genesis of the same agent, on B
            monkeypatch.undo()
            assert forked["agent"] == did and forked["epoch"] == agent["epoch"] == 1

            with trio.fail_after(20):
                while True:
                    states = [await _row_state(n, did) for n in (a, b)]
                    if all(s is AuthorityState.RECOVERY_REQUIRED for s, _ in states):
                        break
                    await trio.sleep(0.1)
            for _, reason in states:
                assert reason, states
            # Neither ticks any more.
            for node in (a, b):
                assert did not in node.api.scheduler.agents
            ticked = [a.api.scheduler.ticks_total, b.api.scheduler.ticks_total]
            await trio.sleep(0.5)
            assert [a.api.scheduler.ticks_total, b.api.scheduler.ticks_total] == ticked
            a.stop()
            b.stop()
