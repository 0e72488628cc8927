"""Node behaviour checked with in-process nodes on 127.0.0.1 (no subprocesses)."""

import socket
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.authority.custody import EpochStart
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.node import Node
from igor_p2p.runtime import loader
from igor_p2p.runtime.loader import LaunchRequest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(root: Path, name: str, **extra: object) -> NodeConfig:
    return NodeConfig(
        data_dir=root / name,
        name=name,
        listen=("/ip4/127.0.0.1/tcp/0",),
        idle_interval_s=0.05,
        announce_interval_s=0.3,
        **extra,  # type: ignore[arg-type]
    )


async def _counter(node: Node) -> str:
    launched = await node.api.launch(
        LaunchRequest(
            wasm=load_agent_source("counter"),
            manifest=load_agent_manifest("counter").canonical_bytes,
            budget=10**9,
        )
    )
    return str(launched["agent"])


async def _hosting(node: Node, did: str) -> None:
    with trio.fail_after(15):
        while did not in node.api.scheduler.agents:
            await trio.sleep(0.01)


async def test_status_follows_the_custody_chain_to_the_current_owner(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        a = await nursery.start(Node(_config(tmp_path, "a")).run)
        boot = ((await a.api.status())["addrs"][0],)
        b = await nursery.start(Node(_config(tmp_path, "b", bootstrap=boot)).run)
        c = await nursery.start(Node(_config(tmp_path, "c", bootstrap=boot)).run)
        did = await _counter(a)
        moved = await a.api.migrate(did, b.api.services.peer_id)
        assert moved["outcome"] == "TRANSFERRED"
        await _hosting(b, did)
        moved = await b.api.migrate(did, c.api.services.peer_id)
        assert moved["outcome"] == "TRANSFERRED"
        await _hosting(c, did)
        # a remembers whom it handed the agent to, and nothing more
        local = await a.api.local_status(did)
        assert local["state"] == "RETIRED"
        assert local["owner_peer"] == b.api.services.peer_id
        # following b's custody leads to c, proven from the genesis
        found = await a.api.agent_status(did)
        assert found["source"] == "network" and found["verified"] is True
        assert found["state"] == "ACTIVE_OWNER"
        assert found["owner_peer"] == c.api.services.peer_id and found["epoch"] == 3
        # a asks b (whom it handed the agent to), or c at once when it has since learned the
        # certified epoch 3 (gossiped claims): never more nodes than the custody has hops
        assert 1 <= found["hops"] <= 2, found
        for node in (a, b, c):
            node.stop()


async def test_metrics_endpoint_serves_the_node_gauges(tmp_path: Path) -> None:
    port = _free_port()
    async with trio.open_nursery() as nursery:
        node = await nursery.start(Node(_config(tmp_path, "m", metrics=f"127.0.0.1:{port}")).run)
        did = await _counter(node)
        await _hosting(node, did)

        def scrape() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return str(r.read().decode())
            except OSError:  # the endpoint starts in the background
                return ""

        with trio.fail_after(10):
            while True:
                body = await trio.to_thread.run_sync(scrape)
                if "igor_agents_ticking 1.0" in body:
                    break
                await trio.sleep(0.1)
        assert "igor_ticks_total" in body and "igor_peers_up" in body
        node.stop()


async def test_a_target_verifies_an_arriving_custody_once_not_again_when_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_genesis: list[int] = []
    real = loader.chain_from_genesis

    def counting(genesis: bytes, links: Sequence[bytes]) -> list[EpochStart]:
        from_genesis.append(len(links))
        return real(genesis, links)

    monkeypatch.setattr(loader, "chain_from_genesis", counting)
    async with trio.open_nursery() as nursery:
        a = await nursery.start(Node(_config(tmp_path, "a")).run)
        boot = ((await a.api.status())["addrs"][0],)
        b = await nursery.start(Node(_config(tmp_path, "b", bootstrap=boot)).run)
        did = await _counter(a)
        await _hosting(a, did)
        assert from_genesis == [0]  # the launch: the genesis alone
        for there, to in ((a, b), (b, a), (a, b)):
            moved = await there.api.migrate(did, to.api.services.peer_id)
            assert moved["outcome"] == "TRANSFERRED"
            await _hosting(to, did)
        # b verified the custody in the first OFFER; a and b then each verify only the epochs
        # after the ones they verified before: no load goes back to the genesis
        assert from_genesis == [0]
        assert (
            b.api.services.verified_custody.verified_prefix(
                did, await b.api.services.committer.read(lambda s: s.custody(did))
            )
            == 4
        )
        for node in (a, b):
            node.stop()
