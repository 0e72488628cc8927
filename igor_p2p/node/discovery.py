"""Discovery: announce ourselves on gossip, learn peers from their announcements, dial them, and
mark peers down when they fall silent.

Every node's announcement reaches every other node, so the network's gossip load grows with
(nodes × announce rate × relay fan-out), and each copy a node receives costs it about a
millisecond of CPU. The announce interval therefore stretches with the number of peers up:
:func:`announce_interval_s` = ``interval_s × max(1, up / PEERS_PER_INTERVAL, up² /
(PEERS_PER_INTERVAL × QUADRATIC_FROM))`` — 1 s up to 4 peers, 3.75 s with 15, 15 s with 31, 62 s
with 63: the whole network sends about 4 announcements per ``interval_s`` up to 16 nodes, and
fewer beyond (about one per second at 64), so an idle node stays near 1 % of a core. The price
is detection time: a silent peer is declared down after three of its intervals. Each
announcement states its interval (``every_ms``) so receivers scale their
silence limit (``PeerTable.silence_limit``). Intervals get ±``ANNOUNCE_JITTER`` jitter, so N
nodes do not publish (and every relay forward) in lock-step bursts.

Discovery does not dial: a peer's announced addresses go into the peerstore (so a stream to it
can be opened on demand) and the peer table; the connection manager
(:mod:`igor_p2p.node.connectivity`) decides whom to hold connections to, between its
watermarks. Liveness is "its announcements keep arriving" (relayed over the gossip mesh), not
"we hold a connection to it". When this node's own loop stalls (CPU starvation), the stall is
credited to every peer (``PeerTable.credit``) instead of being counted as their silence."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import trio
from libp2p.abc import IHost

from igor_p2p.logs import get_logger
from igor_p2p.net.gossip import GossipService, publish_message, subscribe_messages
from igor_p2p.node.connectivity import remember_addrs
from igor_p2p.node.peers import ANNOUNCE_TOPIC, Announcement, MalformedAnnouncement, PeerTable

log = get_logger(__name__)

PEERS_PER_INTERVAL = 4
"""The announce interval is ``interval_s`` up to this many peers up, then grows linearly..."""
QUADRATIC_FROM = 16
"""... and quadratically beyond this many peers up."""
ANNOUNCE_JITTER = 0.25
"""Each announce interval is drawn from ``interval_s × (1 ± ANNOUNCE_JITTER)``."""
STALL_CREDIT_AFTER = 0.5
"""A sweep that wakes more than this many intervals late credits the lateness to every peer."""


def announce_interval_s(base_s: float, peers_up: int) -> float:
    """The announce interval with ``peers_up`` peers up (see the module docstring)."""
    up = float(peers_up)
    return base_s * max(
        1.0, up / PEERS_PER_INTERVAL, up * up / (PEERS_PER_INTERVAL * QUADRATIC_FROM)
    )


class Discovery:
    """Runs the announce, listen and sweep loops for one node."""

    def __init__(
        self,
        host: IHost,
        gossip: GossipService,
        peers: PeerTable,
        announcement: Callable[[], Announcement],
        interval_s: float,
        on_peer_down: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.gossip = gossip
        self.peers = peers
        self.announcement = announcement
        self.interval_s = interval_s
        self.on_peer_down = on_peer_down
        self._rng = random.Random()
        self.stall_credited_s = 0.0
        self.rejected = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        subscription = await subscribe_messages(self.gossip, ANNOUNCE_TOPIC)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen, subscription)
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._sweep_loop)
            task_status.started()

    def current_interval_s(self) -> float:
        """The announce interval for the current number of peers up."""
        return announce_interval_s(self.interval_s, len(self.peers.up_peers()))

    async def announce_now(self, interval_s: float | None = None) -> None:
        """Publish our announcement, stating ``interval_s`` (default: the current interval) as
        the time until the next one."""
        every_s = self.current_interval_s() if interval_s is None else interval_s
        every_ms = round(every_s * 1000)
        try:
            announcement = replace(self.announcement(), every_ms=every_ms)
            await publish_message(self.gossip, ANNOUNCE_TOPIC, announcement.to_wire())
        except Exception as exc:  # gossip is a hint; never let it take the node down
            log.debug("announce failed: %s", exc)

    async def _announce_loop(self) -> None:
        while True:
            # The interval stated in this announcement is the one we sleep next: a receiver's
            # silence limit must cover the gap to our next announcement.
            interval_s = self.current_interval_s()
            await self.announce_now(interval_s)
            jitter = self._rng.uniform(-ANNOUNCE_JITTER, ANNOUNCE_JITTER)
            await trio.sleep(interval_s * (1.0 + jitter))

    async def _listen(self, subscription) -> None:  # type: ignore[no-untyped-def]
        async for gossip in subscription:
            if gossip.message.get("type") != "announce":
                continue
            try:
                announcement = Announcement.from_wire(gossip.message)
            except MalformedAnnouncement as exc:
                self.rejected += 1
                log.debug("bad announcement from %s: %s", gossip.sender, exc)
                continue
            if announcement.peer_id != gossip.sender:
                self.rejected += 1
                log.debug("announcement for %s signed by %s", announcement.peer_id, gossip.sender)
                continue
            previous = self.peers.peers.get(announcement.peer_id)
            self.peers.observe(announcement, trio.current_time())
            if previous is None or previous.announcement.addrs != announcement.addrs:
                remember_addrs(self.host, announcement.peer_id, announcement.addrs)

    async def _sweep_loop(self) -> None:
        period = self.interval_s / 2
        while True:
            before = trio.current_time()
            await trio.sleep(period)
            now = trio.current_time()
            late = now - before - period
            if late > self.interval_s * STALL_CREDIT_AFTER:
                self.peers.credit(late)
                self.stall_credited_s += late
                log.debug("discovery loop stalled %.2f s; credited to peers", late)
            for peer_id in self.peers.sweep(now):
                log.info("peer down", peer=peer_id)
                if self.on_peer_down is not None:
                    self.on_peer_down(peer_id)
            connected = {str(p) for p in self.host.get_network().connections}
            for peer_id, entry in self.peers.peers.items():
                entry.connected = peer_id in connected
