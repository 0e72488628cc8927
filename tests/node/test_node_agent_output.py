"""A TinyGo-shaped agent on in-process nodes: its output is readable through the admin API,
and it migrates and goes on counting (and printing) on the target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.log_methods import BadLogParams, NoSuchAgent, register_log_methods
from igor_p2p.node.node import Node
from igor_p2p.runtime.loader import LaunchRequest


def _config(root: Path, name: str, **extra: object) -> NodeConfig:
    return NodeConfig(
        data_dir=root / name,
        name=name,
        listen=("/ip4/127.0.0.1/tcp/0",),
        idle_interval_s=0.05,
        announce_interval_s=0.3,
        **extra,  # type: ignore[arg-type]
    )


def _log_methods(node: Node) -> dict[str, Any]:
    """The node's ``agent_logs`` admin method, as the node registers it on its socket."""
    methods: dict[str, Any] = {}
    register_log_methods(methods, node.api.services)
    return methods


async def _logs(node: Node, did: str, after: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = await _log_methods(node)["agent_logs"]({"agent": did, "after": after})
    return result


async def _wait_for_line(node: Node, did: str, text: str) -> list[dict[str, Any]]:
    with trio.fail_after(20):
        while True:
            lines = (await _logs(node, did))["lines"]
            if any(line["text"] == text for line in lines):
                return lines
            await trio.sleep(0.02)


async def test_tinygo_agent_output_is_served_and_it_migrates_and_continues(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        a = await nursery.start(Node(_config(tmp_path, "a")).run)
        boot = ((await a.api.status())["addrs"][0],)
        b = await nursery.start(Node(_config(tmp_path, "b", bootstrap=boot)).run)
        launched = await a.api.launch(
            LaunchRequest(
                wasm=load_agent_source("tinygo"),
                manifest=load_agent_manifest("tinygo").canonical_bytes,
                budget=10**12,
            )
        )
        did = str(launched["agent"])
        lines = await _wait_for_line(a, did, "tick 3")
        assert [line["stream"] for line in lines[:3]] == ["stdout"] * 3
        page = await _logs(a, did[-12:])  # a suffix is enough
        assert page["agent"] == did
        newer = await _logs(a, did, after=page["next_after"])
        assert all(line["seq"] > page["next_after"] for line in newer["lines"])

        moved = await a.api.migrate(did, b.api.services.peer_id)
        assert moved["outcome"] == "TRANSFERRED"
        with trio.fail_after(20):
            while not (await _logs(b, did))["lines"]:
                await trio.sleep(0.01)
        first_on_b = (await _logs(b, did))["lines"][0]
        assert first_on_b["stream"] == "stderr"  # printed by agent_resume on b
        left_at = int(first_on_b["text"].removeprefix("resumed at tick "))
        printed_on_a = [line["text"] for line in (await _logs(a, did))["lines"]]
        assert [t for t in printed_on_a if t.startswith("tick ")][-1] == f"tick {left_at}"
        on_b = await _wait_for_line(b, did, f"tick {left_at + 2}")
        texts = [line["text"] for line in on_b]
        assert texts[1:3] == [f"tick {left_at + 1}", f"tick {left_at + 2}"]
        for node in (a, b):
            node.stop()


async def test_agent_logs_refuses_unknown_agents_and_bad_params(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node = await nursery.start(Node(_config(tmp_path, "n")).run)
        with pytest.raises(NoSuchAgent):
            await _logs(node, "did:key:z6MkNoSuchAgentHere")
        with pytest.raises(BadLogParams):
            await _log_methods(node)["agent_logs"]({"agent": ""})
        with pytest.raises(BadLogParams):
            await _log_methods(node)["agent_logs"]({"agent": "x", "after": -1})
        node.stop()
