"""Discovery: announce ourselves on gossip, learn peers from their announcements, dial them,
and mark peers down when they fall silent."""

from __future__ import annotations

from collections.abc import Callable

import trio
from libp2p.abc import IHost

from igor_p2p.logs import get_logger
from igor_p2p.net.errors import NetError
from igor_p2p.net.gossip import GossipService, publish_message, subscribe_messages
from igor_p2p.net.host import dial
from igor_p2p.node.peers import ANNOUNCE_TOPIC, Announcement, MalformedAnnouncement, PeerTable

log = get_logger(__name__)


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
        self._dialing: set[str] = set()
        self.rejected = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        subscription = await subscribe_messages(self.gossip, ANNOUNCE_TOPIC)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen, subscription, nursery)
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._sweep_loop)
            task_status.started()

    async def announce_now(self) -> None:
        try:
            await publish_message(self.gossip, ANNOUNCE_TOPIC, self.announcement().to_wire())
        except Exception as exc:  # gossip is a hint; never let it take the node down
            log.debug("announce failed: %s", exc)

    async def _announce_loop(self) -> None:
        while True:
            await self.announce_now()
            await trio.sleep(self.interval_s)

    async def _listen(self, subscription, nursery: trio.Nursery) -> None:  # type: ignore[no-untyped-def]
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
            fresh = self.peers.observe(announcement, trio.current_time())
            if fresh or not self._connected(announcement.peer_id):
                nursery.start_soon(self._dial, announcement)

    def _connected(self, peer_id: str) -> bool:
        return any(str(p) == peer_id for p in self.host.get_network().connections)

    async def _dial(self, announcement: Announcement) -> None:
        if announcement.peer_id in self._dialing:
            return
        self._dialing.add(announcement.peer_id)
        try:
            for addr in announcement.addrs:
                try:
                    await dial(self.host, addr, timeout_s=2.0)
                    return
                except NetError as exc:
                    log.debug("dial %s failed: %s", addr, exc, peer=announcement.peer_id)
        finally:
            self._dialing.discard(announcement.peer_id)

    async def _sweep_loop(self) -> None:
        while True:
            await trio.sleep(self.interval_s / 2)
            for peer_id in self.peers.sweep(trio.current_time()):
                log.info("peer down", peer=peer_id)
                if self.on_peer_down is not None:
                    self.on_peer_down(peer_id)
            connected = {str(p) for p in self.host.get_network().connections}
            for peer_id, entry in self.peers.peers.items():
                entry.connected = peer_id in connected
