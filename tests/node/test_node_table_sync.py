"""Peer-table sync: a node learns every peer from one connected peer's table at once, relayed
announcements are checked against their originators' signatures, and an announcement keeps
its age when relayed."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from igor_p2p.net.gossip import GossipConfig, gossip_service, verify_signed
from igor_p2p.net.host import HostConfig, build_host, dial, full_addrs, running_host
from igor_p2p.node.discovery import Discovery
from igor_p2p.node.peers import ANNOUNCE_TOPIC, Announcement, PeerTable

INTERVAL_S = 5.0


@asynccontextmanager
async def _node(
    stack: AsyncExitStack, nursery: trio.Nursery, *, start: bool = True
) -> AsyncIterator[Discovery]:
    host = build_host(HostConfig(key_seed=os.urandom(32)))
    await stack.enter_async_context(running_host(host))
    gossip = await stack.enter_async_context(gossip_service(host, GossipConfig()))
    peers = PeerTable(self_id=str(host.get_id()), down_after_s=30.0)

    def announcement() -> Announcement:
        return Announcement(str(host.get_id()), "n", tuple(full_addrs(host)), 10, 1, 0)

    discovery = Discovery(host, gossip, peers, announcement, INTERVAL_S)
    if start:
        await nursery.start(discovery.run)
    yield discovery


async def _until(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.02)


async def test_a_newcomer_learns_every_peer_from_one_neighbours_table(
    nursery: trio.Nursery,
) -> None:
    async with AsyncExitStack() as stack:
        a, b, c = [await stack.enter_async_context(_node(stack, nursery)) for _ in range(3)]
        # The newcomer does not listen to announcements: only the table sync can fill it.
        newcomer = await stack.enter_async_context(_node(stack, nursery, start=False))
        for x, y in ((a, b), (b, c)):
            await dial(x.host, full_addrs(y.host)[0], timeout_s=3)
        # B holds A's, C's and its own signed announcement.
        await _until(lambda: len(b.peers.up_peers()) == 2 and len(b.signed) == 3)
        await dial(newcomer.host, full_addrs(b.host)[0], timeout_s=3)
        assert await newcomer.sync_with(str(b.host.get_id())) == 3  # A, C and B itself
        known = {e.announcement.peer_id for e in newcomer.peers.up_peers()}
        assert known == {str(x.host.get_id()) for x in (a, b, c)}
        assert newcomer.peers.peers[str(a.host.get_id())].announcement.addrs
        assert await newcomer.sync_with(str(b.host.get_id())) == 0  # nothing newer


async def test_relayed_announcements_keep_their_age_and_forged_ones_are_refused(
    nursery: trio.Nursery,
) -> None:
    async with AsyncExitStack() as stack:
        a, b = [await stack.enter_async_context(_node(stack, nursery)) for _ in range(2)]
        await dial(a.host, full_addrs(b.host)[0], timeout_s=3)
        await _until(lambda: str(a.host.get_id()) in b.signed)
        seqno, raw, heard = b.signed[str(a.host.get_id())]
        assert verify_signed(raw, ANNOUNCE_TOPIC).sender == str(a.host.get_id())
        # A forged copy (one byte of the payload changed) does not verify.
        forged = raw.replace(b"igor-p2p", b"igor-p3p")
        assert forged != raw
        rejected = 0
        try:
            verify_signed(forged, ANNOUNCE_TOPIC)
        except Exception:
            rejected = 1
        assert rejected == 1
        # An entry relayed with age 20 s is taken as heard 20 s ago, not now.
        entries = b.sync_entries()
        assert any(e["raw"] == raw for e in entries)
        table = PeerTable(self_id="someone-else", down_after_s=60.0)
        gossip = verify_signed(raw, ANNOUNCE_TOPIC)
        now = trio.current_time()
        assert table.observe(Announcement.from_wire(gossip.message), now, now - 20.0)
        assert table.peers[gossip.sender].last_seen == now - 20.0
        assert seqno >= 1 and heard <= trio.current_time()
