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
credited to every peer (``PeerTable.credit``) instead of being counted as their silence.

Table sync (anti-entropy): with announcement intervals of up to a minute, a node that just
started (or restarted) would wait that long to hear of every peer, and a peer marked down by
a delayed announcement would stay down as long. Each node keeps the last *signed* announcement
of every peer (the pubsub message as its originator signed it) and serves them on
``/igor/peers/1.0.0``; a node asks one or two connected peers as soon as it has a connection,
then one random peer every ``SYNC_FAST_S`` while syncs keep bringing news (its first
neighbours knew little), and every ``SYNC_INTERVAL_S`` once three in a row brought nothing.
Every relayed announcement is verified against its originator's signature (a peer can replay,
not forge) and counts as heard when the relaying peer heard it (``age_ms``), so liveness still
means "it announced recently"."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from igor_p2p.logs import get_logger
from igor_p2p.net.errors import NetError
from igor_p2p.net.framing import read_message, write_message
from igor_p2p.net.gossip import (
    GossipMessage,
    GossipService,
    originator,
    publish_message,
    subscribe_messages,
    verify_signed,
)
from igor_p2p.net.handlers import set_guarded_handler
from igor_p2p.net.host import dial
from igor_p2p.node.connectivity import remember_addrs
from igor_p2p.node.peers import (
    ANNOUNCE_TOPIC,
    DOWN_AFTER_INTERVALS,
    Announcement,
    MalformedAnnouncement,
    PeerTable,
)

log = get_logger(__name__)

PEERS_PER_INTERVAL = 4
"""The announce interval is ``interval_s`` up to this many peers up, then grows linearly..."""
QUADRATIC_FROM = 16
"""... and quadratically beyond this many peers up."""
ANNOUNCE_JITTER = 0.25
"""Each announce interval is drawn from ``interval_s × (1 ± ANNOUNCE_JITTER)``."""
STALL_CREDIT_AFTER = 0.5
"""A sweep that wakes more than this many intervals late credits the lateness to every peer."""
SYNC_PROTOCOL = "/igor/peers/1.0.0"
SYNC_INTERVAL_S = 30.0
SYNC_FIRST_PEERS = 2
SYNC_FAST_PEERS = 2
SYNC_FAST_S = 3.0
SYNC_QUIET_ROUNDS = 3
"""Sync every ``SYNC_FAST_S`` until this many syncs in a row brought nothing new."""
SYNC_MAX_ENTRIES = 1024
SYNC_MAX_FRAME = 2 * 1024 * 1024
SYNC_TIMEOUT_S = 5.0
MAX_SIGNED_ANNOUNCEMENT = 4096
HEAL_DIAL_LIMIT = 24
"""``_dial`` (heal) stops adding connections at this many (the default high watermark)."""
RELAY_SLACK_S = 0.5
SWEEP_MAX_S = 5.0
SUBSCRIBER_WAIT_S = 3.0
"""A relayed announcement counts as newer only if heard this much later than ours."""


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
        on_peer_up: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.gossip = gossip
        self.peers = peers
        self.announcement = announcement
        self.interval_s = interval_s
        self.on_peer_down = on_peer_down
        self.on_peer_up = on_peer_up
        """Called when a peer is heard that was unknown or down (it came back)."""
        self._rng = random.Random()
        self.stall_credited_s = 0.0
        self.rejected = 0
        self.signed: dict[str, tuple[int, bytes, float]] = {}
        """peer ID → (seqno, its last signed announcement, trio time it was heard)."""
        self.synced = 0
        self._dialing: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        subscription = await subscribe_messages(self.gossip, ANNOUNCE_TOPIC)
        set_guarded_handler(self.host, SYNC_PROTOCOL, self._serve_sync, log=log.logger)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen, subscription)
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._sweep_loop)
            nursery.start_soon(self._sync_loop)
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
            self._accept(gossip, trio.current_time(), relayed=False)

    def _accept(self, gossip: GossipMessage, heard_at: float, *, relayed: bool) -> bool:
        """Take a signed announcement (live, or relayed by a sync and heard ``heard_at`` by
        the relaying peer) into the table. A relayed one older than what we hold is ignored.
        (Not by sequence number: py-libp2p's starts at the process's start time, so a
        restarted peer's numbers can be lower than before.)"""
        if gossip.message.get("type") != "announce":
            return False
        try:
            announcement = Announcement.from_wire(gossip.message)
        except MalformedAnnouncement as exc:
            self.rejected += 1
            log.debug("bad announcement from %s: %s", gossip.sender, exc)
            return False
        if announcement.peer_id != gossip.sender:
            self.rejected += 1
            log.debug("announcement for %s signed by %s", announcement.peer_id, gossip.sender)
            return False
        known = self.signed.get(gossip.sender)
        if relayed and known is not None and self._not_newer(known, gossip.seqno, heard_at):
            return False
        if gossip.raw and len(gossip.raw) <= MAX_SIGNED_ANNOUNCEMENT:
            self.signed[gossip.sender] = (gossip.seqno, gossip.raw, heard_at)
            if len(self.signed) > SYNC_MAX_ENTRIES:
                oldest = min(self.signed, key=lambda p: self.signed[p][2])
                del self.signed[oldest]
        previous = self.peers.peers.get(announcement.peer_id)
        came_up = self.peers.observe(announcement, trio.current_time(), heard_at)
        if came_up and self.on_peer_up is not None:
            self.on_peer_up(announcement.peer_id)
        if previous is None or previous.announcement.addrs != announcement.addrs:
            remember_addrs(self.host, announcement.peer_id, announcement.addrs)
        return True

    async def _dial(self, announcement: Announcement) -> None:
        """Reconnect to an announced peer now (the admin ``heal`` calls this for every peer it
        knows): skipped when connected, already dialing, or when this node already holds (or
        is dialing) ``HEAL_DIAL_LIMIT`` connections — the connection manager does the rest."""
        peer_id = announcement.peer_id
        network = self.host.get_network()
        if peer_id in self._dialing or self._connected(peer_id):
            return
        if len(network.connections) + len(self._dialing) >= HEAL_DIAL_LIMIT:
            return
        self._dialing.add(peer_id)
        try:
            for addr in announcement.addrs:
                try:
                    await dial(self.host, addr, timeout_s=2.0)
                    return
                except NetError as exc:
                    log.debug("dial %s failed: %s", addr, exc, peer=peer_id)
        finally:
            self._dialing.discard(peer_id)

    def _connected(self, peer_id: str) -> bool:
        return any(
            str(p) == peer_id for p, conns in self.host.get_network().connections.items() if conns
        )

    # ------------------------------------------------------------ table sync

    @staticmethod
    def _not_newer(known: tuple[int, bytes, float], seqno: int, heard_at: float) -> bool:
        """A relayed announcement is not news if it is the one we hold (same sequence number,
        whenever it was heard) or was heard no later than ours (give or take transit)."""
        return seqno == known[0] or heard_at <= known[2] + RELAY_SLACK_S

    def sync_entries(self) -> list[dict[str, object]]:
        """Our own and every up peer's last signed announcement, with its age."""
        now = trio.current_time()
        entries = []
        for peer_id, (_seqno, raw, heard_at) in self.signed.items():
            entry = self.peers.peers.get(peer_id)
            if peer_id != self.peers.self_id and (entry is None or not entry.up):
                continue
            entries.append({"raw": raw, "age_ms": max(0, round((now - heard_at) * 1000))})
        return entries[:SYNC_MAX_ENTRIES]

    async def _serve_sync(self, stream) -> None:  # type: ignore[no-untyped-def]
        request = await read_message(stream, max_size=256, timeout_s=SYNC_TIMEOUT_S)
        if request.get("type") != "peers_sync":
            await stream.reset()
            return
        reply = {"type": "peers", "entries": self.sync_entries()}
        await write_message(stream, reply, timeout_s=SYNC_TIMEOUT_S, max_size=SYNC_MAX_FRAME)
        await stream.close()

    async def sync_with(self, peer_id: str) -> int:
        """Ask ``peer_id`` for its table; returns how many announcements were new to us."""
        with trio.fail_after(SYNC_TIMEOUT_S):
            stream = await self.host.new_stream(ID.from_base58(peer_id), [TProtocol(SYNC_PROTOCOL)])
        try:
            await write_message(stream, {"type": "peers_sync"}, timeout_s=SYNC_TIMEOUT_S)
            reply = await read_message(stream, max_size=SYNC_MAX_FRAME, timeout_s=SYNC_TIMEOUT_S)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.close()
        entries = reply.get("entries")
        if reply.get("type") != "peers" or not isinstance(entries, list):
            raise NetError(f"{peer_id} answered the table sync with something else")
        now = trio.current_time()
        new = 0
        for item in entries[:SYNC_MAX_ENTRIES]:
            if not isinstance(item, dict):
                continue
            raw, age_ms = item.get("raw"), item.get("age_ms")
            if not isinstance(raw, bytes) or type(age_ms) is not int or age_ms < 0:
                continue
            heard_at = now - age_ms / 1000.0
            claimed = originator(raw)
            known = self.signed.get(claimed[0]) if claimed is not None else None
            if (
                known is not None
                and claimed is not None
                and self._not_newer(known, claimed[1], heard_at)
            ):
                continue  # not newer than ours: no need to check its signature
            try:
                gossip = verify_signed(raw, ANNOUNCE_TOPIC)
            except NetError:
                self.rejected += 1
                continue
            new += self._accept(gossip, heard_at, relayed=True)
            await trio.sleep(0)  # verifying a big table must not starve the loop
        self.synced += new
        return new

    def _connected_peers(self) -> list[str]:
        return [str(p) for p, conns in self.host.get_network().connections.items() if conns]

    async def _sync_once(self, count: int) -> int:
        """Sync with ``count`` random connected peers; how many announcements were new."""
        new = 0
        peers = self._connected_peers()
        for peer_id in self._rng.sample(peers, min(count, len(peers))):
            try:
                new += await self.sync_with(peer_id)
            except Exception as exc:  # a hint: try another peer next time
                log.debug("table sync failed: %s", type(exc).__name__, peer=peer_id)
        return new

    async def _sync_loop(self) -> None:
        while not self._connected_peers():
            await trio.sleep(0.2)
        await trio.sleep(0.3)  # let the first connections finish their handshakes
        await self._sync_once(SYNC_FIRST_PEERS)
        # Our announcements so far may have gone out before we had any connection (or a
        # mesh): make sure the network hears of us now, not one (long) interval later — once
        # a peer's subscription has arrived (before that, a publish reaches nobody), and once
        # more a second later (our mesh forms at the next heartbeat).
        with trio.move_on_after(SUBSCRIBER_WAIT_S):
            while not self.gossip.pubsub.peer_topics.get(ANNOUNCE_TOPIC):
                await trio.sleep(0.05)
        await self.announce_now()
        await trio.sleep(1.0)
        await self.announce_now()
        # While syncs keep bringing news (the network is still forming: our first neighbours
        # knew little), sync every few seconds; after SYNC_QUIET_ROUNDS quiet ones, every
        # SYNC_INTERVAL_S.
        quiet = 0
        while True:
            fast = quiet < SYNC_QUIET_ROUNDS
            delay = SYNC_FAST_S if fast else SYNC_INTERVAL_S
            await trio.sleep(delay * self._rng.uniform(0.75, 1.25))
            quiet = 0 if await self._sync_once(SYNC_FAST_PEERS if fast else 1) else quiet + 1

    async def _sweep_loop(self) -> None:
        while True:
            # Sweep twice per base interval, less often when silence limits are long (a big
            # network): a sweep costs a pass over the table and the connections.
            period = max(self.interval_s / 2, min(SWEEP_MAX_S, self.peers.floor_s / 20))
            before = trio.current_time()
            await trio.sleep(period)
            now = trio.current_time()
            late = now - before - period
            if late > self.interval_s * STALL_CREDIT_AFTER:
                self.peers.credit(late)
                self.stall_credited_s += late
                log.debug("discovery loop stalled %.2f s; credited to peers", late)
            # A peer that announced fast (it knew few peers) is still given the silence the
            # network's size calls for: start-up floods delay announcements by seconds.
            expected = announce_interval_s(self.interval_s, len(self.peers.peers))
            self.peers.floor_s = DOWN_AFTER_INTERVALS * expected
            for peer_id in self.peers.sweep(now):
                log.info("peer down", peer=peer_id)
                if self.on_peer_down is not None:
                    self.on_peer_down(peer_id)
            connected = {str(p) for p in self.host.get_network().connections}
            for peer_id, entry in self.peers.peers.items():
                entry.connected = peer_id in connected
