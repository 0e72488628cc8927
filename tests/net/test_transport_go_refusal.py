"""Go Igor's ``/igor/migrate/1.0.0`` gets a clean, Go-shaped refusal (issue 13).

A Go node writes one ``AgentTransfer`` as a JSON line (Go's ``json.Encoder``), then decodes one
``AgentStarted``. The messages here are built from Go's own test fixtures
(``tests/lineage/fixtures/igor-go/agent_package*.json``, copied from
``../shared/fixtures/igor-go``).
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from transport_support import LaneNode, Libp2pLane

from igor_p2p.net.go_igor import (
    GO_MIGRATE_PROTOCOL,
    GO_REFUSAL,
    GoRefusalLimits,
    agent_id_of,
    agent_started,
    serve_go_refusal,
)
from igor_p2p.wire.codec import Message

FIXTURES = Path(__file__).resolve().parents[1] / "lineage" / "fixtures" / "igor-go"
TIMEOUT = 5.0


def go_package(name: str = "agent_package.json") -> dict[str, Any]:
    package: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return package


def go_transfer_line(package: dict[str, Any], source: str = "12D3KooWGoSource") -> bytes:
    """What Go's ``json.NewEncoder(stream).Encode(AgentTransfer{...})`` writes."""
    transfer = {"Package": package, "SourceNodeID": source}
    return (json.dumps(transfer, separators=(",", ":")) + "\n").encode()


async def read_json_line(stream: INetStream) -> dict[str, Any]:
    """What Go's ``json.NewDecoder(stream).Decode(&started)`` reads."""
    buf = b""
    with trio.fail_after(TIMEOUT):
        while b"\n" not in buf:
            buf += await stream.read(4096)
    value: dict[str, Any] = json.loads(buf.split(b"\n", 1)[0])
    return value


async def everything_until_the_end(stream: INetStream) -> bytes:
    """All the bytes the node sends before the stream ends (EOF or reset)."""
    data = b""
    with trio.fail_after(TIMEOUT):
        while True:
            try:
                chunk = await stream.read(4096)
            except Exception:  # StreamEOF / StreamReset: the end
                return data
            if not chunk:
                return data
            data += chunk


async def serving_node(nursery: trio.Nursery) -> tuple[LaneNode, LaneNode, list[Message]]:
    go, node = await Libp2pLane(nursery).start(2)
    handled: list[Message] = []

    async def handler(sender: bytes, message: Message) -> Message:
        handled.append(message)
        raise AssertionError("a Go transfer must never reach the node core")

    node.serve(handler)
    return go, node, handled


async def open_go_stream(go: LaneNode, node: LaneNode) -> INetStream:
    assert go.host is not None and node.host is not None
    return await go.host.new_stream(node.host.get_id(), [TProtocol(GO_MIGRATE_PROTOCOL)])


# ------------------------------------------------------------------------ sans-IO


def test_the_agent_id_is_read_from_the_head_of_a_go_transfer() -> None:
    line = go_transfer_line(go_package())
    assert agent_id_of(line) == "golden-agent"
    assert agent_id_of(line[:40]) == "golden-agent"  # Go writes Package.AgentID first
    assert agent_id_of(b'{"Package":{"AgentID":"a\\"b\\u00e9"') == 'a"bé'
    assert agent_id_of(b'{"Package":{"WASMBinary":"AGFz') == ""
    assert agent_id_of(b'{"Package":{"AgentID":7}}') == ""


def test_the_refusal_is_one_go_shaped_agent_started_json_line() -> None:
    line = agent_started("golden-agent", "12D3KooWNode", "no thanks")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "AgentID": "golden-agent",
        "NodeID": "12D3KooWNode",
        "Success": False,
        "Error": "no thanks",
    }
    assert list(json.loads(line)) == ["AgentID", "NodeID", "Success", "Error"]  # Go's order


# ------------------------------------------------------------------------ over libp2p


@pytest.mark.parametrize("fixture", ["agent_package.json", "agent_package_with_replay.json"])
async def test_a_go_migration_is_refused_with_a_reason_go_logs(
    nursery: trio.Nursery, fixture: str
) -> None:
    go, node, handled = await serving_node(nursery)
    package = go_package(fixture)
    stream = await open_go_stream(go, node)
    await stream.write(go_transfer_line(package))
    started = await read_json_line(stream)
    assert node.host is not None
    assert started == {
        "AgentID": package["AgentID"],
        "NodeID": node.host.get_id().to_base58(),
        "Success": False,
        "Error": GO_REFUSAL,
    }
    assert "Igor-P2P" in started["Error"] and "igor checkpoint import" in started["Error"]
    assert handled == []


async def test_a_transfer_bigger_than_the_parse_window_is_read_whole_and_refused(
    nursery: trio.Nursery,
) -> None:
    go, node, handled = await serving_node(nursery)
    package = go_package()
    package["WASMBinary"] = base64.b64encode(b"\x00asm" + b"\x01" * (3 << 20)).decode()
    line = go_transfer_line(package)
    assert len(line) > 16 * GoRefusalLimits().parse_bytes
    stream = await open_go_stream(go, node)
    await stream.write(line)  # Go writes the whole transfer before it reads
    started = await read_json_line(stream)
    assert started["AgentID"] == "golden-agent" and started["Success"] is False
    assert handled == []


async def test_input_that_is_not_go_json_is_reset_unanswered(nursery: trio.Nursery) -> None:
    go, node, _ = await serving_node(nursery)
    stream = await open_go_stream(go, node)
    await stream.write(b"\x00\x00\x00\x10" + b"\x84" * 16)  # framed msgpack, as old Igor-P2P
    assert await everything_until_the_end(stream) == b""


async def test_a_transfer_that_never_ends_is_cut_off_at_the_timeout(nursery: trio.Nursery) -> None:
    go, node = await Libp2pLane(nursery).start(2)
    assert node.host is not None
    refusal = serve_go_refusal(node.host, limits=GoRefusalLimits(timeout_s=0.3))
    stream = await open_go_stream(go, node)
    await stream.write(b'{"Package":{"AgentID":"slow"')
    start = trio.current_time()
    assert await everything_until_the_end(stream) == b""
    assert trio.current_time() - start < 0.3 + 2.0
    assert refusal.refused == 0


async def test_reading_stops_at_the_size_cap_and_the_refusal_still_comes(
    nursery: trio.Nursery,
) -> None:
    go, node = await Libp2pLane(nursery).start(2)
    assert node.host is not None
    refusal = serve_go_refusal(node.host, limits=GoRefusalLimits(max_bytes=256 * 1024))
    stream = await open_go_stream(go, node)

    async def keep_writing() -> None:
        await stream.write(b'{"Package":{"AgentID":"endless","WASMBinary":"')
        with trio.move_on_after(TIMEOUT), contextlib.suppress(Exception):
            while True:  # until the node stops reading (window full) or resets
                await stream.write(b"A" * 65536)

    async with trio.open_nursery() as inner:
        inner.start_soon(keep_writing)
        started = await read_json_line(stream)
        inner.cancel_scope.cancel()
    assert started["AgentID"] == "endless" and started["Success"] is False
    with trio.fail_after(TIMEOUT):  # the handler counts once its write returned
        while refusal.refused == 0:
            await trio.sleep(0.01)
    assert refusal.refused == 1
