"""What any peer learns from /igor/info, how often it may ask, and how placement treats what
peers say about themselves."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

from igor_p2p.agent.manifest import MigrationPolicy
from igor_p2p.net.framing import decode_message
from igor_p2p.net.ratelimit import PeerRateLimiter
from igor_p2p.node.info import info_handler
from igor_p2p.node.peers import Announcement, MalformedAnnouncement, PeerEntry, PeerTable
from igor_p2p.node.placement import MAX_TRUSTED_CAPACITY, HopHistory, choose_target

FULL_STATUS = {
    "found": True,
    "agent": "did:key:z6MkA",
    "state": "ACTIVE_OWNER",
    "epoch": 3,
    "owner_peer": "12D3KooWowner",
    "node": "n1",
    "tick": 17,
    "budget": 123_456,
    "committed_tick": 17,
    "reason": "private operator note",
}


class FakeStream:
    """One request in, the reply collected."""

    def __init__(self, peer: str, request: dict[str, Any]) -> None:
        payload = msgpack.packb(request)
        self._in = bytearray(struct.pack(">I", len(payload)) + payload)
        self.out = bytearray()
        self.muxed_conn = SimpleNamespace(peer_id=peer)

    async def read(self, n: int | None = None) -> bytes:
        n = len(self._in) if n is None else n
        chunk = bytes(self._in[:n])
        del self._in[:n]
        return chunk

    async def write(self, data: bytes) -> None:
        self.out += data

    async def close(self) -> None:
        pass

    def reply(self) -> dict[str, Any]:
        return decode_message(bytes(self.out[4:]))


async def _answer(did: str) -> dict[str, Any]:
    return dict(FULL_STATUS)


async def test_info_tells_a_peer_only_what_agent_status_needs() -> None:
    stream = FakeStream("peerA", {"type": "agent_status", "agent": "did:key:z6MkA"})
    await info_handler(_answer)(stream)  # type: ignore[arg-type]
    reply = stream.reply()
    assert reply["state"] == "ACTIVE_OWNER" and reply["owner_peer"] == "12D3KooWowner"
    assert "budget" not in reply and "reason" not in reply


async def test_info_queries_are_rate_limited_per_peer() -> None:
    handler = info_handler(_answer, PeerRateLimiter(rate_per_s=0.001, burst=2))
    request = {"type": "agent_status", "agent": "did:key:z6MkA"}
    replies = []
    for peer in ("flooder", "flooder", "flooder", "honest"):
        stream = FakeStream(peer, request)
        await handler(stream)  # type: ignore[arg-type]
        replies.append(stream.reply()["type"])
    assert replies == ["agent_status", "agent_status", "error", "agent_status"]


def _entry(peer: str, *, price: int, capacity: int, load: int = 0) -> PeerEntry:
    return PeerEntry(Announcement(peer, peer, (), capacity, price, load), last_seen=0.0)


POLICY = MigrationPolicy(enabled=True)


def test_announced_numbers_outside_sane_ranges_are_malformed() -> None:
    wire = _entry("p", price=1, capacity=1).announcement.to_wire()
    for field, value in (("capacity", 10**18), ("price", 2**63), ("load", -1)):
        with pytest.raises(MalformedAnnouncement):
            Announcement.from_wire({**wire, field: value})


def test_a_huge_announced_capacity_counts_only_up_to_the_trusted_maximum() -> None:
    liar = _entry("liar", price=5, capacity=1_000_000, load=MAX_TRUSTED_CAPACITY)
    honest = _entry("honest", price=9, capacity=10)
    assert choose_target("cheapest", [liar, honest], POLICY) == "honest"


def test_peers_whose_hops_keep_failing_are_skipped_and_proven_peers_preferred() -> None:
    griefer = _entry("griefer", price=0, capacity=10)
    a = _entry("a", price=5, capacity=10)
    b = _entry("b", price=5, capacity=10)
    history = HopHistory()
    assert choose_target("cheapest", [griefer, a, b], POLICY, history=history) == "griefer"
    for _ in range(3):
        history.record("griefer", completed=False)
    history.record("b", completed=True)
    assert choose_target("cheapest", [griefer, a, b], POLICY, history=history) == "b"


def test_the_peer_table_is_bounded_and_ignores_announcement_floods() -> None:
    table = PeerTable(self_id="me", down_after_s=4.0, max_peers=50)
    for i in range(5000):
        table.observe(_entry(f"p{i}", price=1, capacity=1).announcement, now=float(i))
    assert len(table.peers) == 50
    flood = PeerTable(self_id="me", down_after_s=4.0)
    heard = [flood.observe(_entry("x", price=1, capacity=1).announcement, 0.0) for _ in range(100)]
    assert heard[0] is True and flood.flood.refused >= 100 - 20
