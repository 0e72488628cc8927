"""Connectivity: bounded connections, quick rejoin, and the known-peers file, for one node.

:func:`run_connectivity` is the single entry point the node starts. It

* loads the known-peers file (:mod:`igor_p2p.node.known_peers`) and puts those addresses in
  the peerstore, so a stream to a peer can be opened right after a restart;
* runs the connection manager (:mod:`igor_p2p.net.connmgr`) between ``connections_low`` and
  ``connections_high``: it dials the bootstrap list, known peers and peers heard announcing
  (with per-peer backoff) while under low, trims above high, never cuts a gossip-mesh peer, and
  explores peers believed down so that groups split by a partition join again after it heals;
* writes the known-peers file every :data:`~igor_p2p.node.known_peers.SAVE_INTERVAL_S` and
  when the node stops.

Peer tables do not depend on connections: every node hears every other through gossip
announcements relayed over the mesh.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from pathlib import Path

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from igor_p2p.logs import get_logger
from igor_p2p.net.connmgr import ConnectionManager, DialCandidate, Watermarks
from igor_p2p.net.errors import InvalidAddress
from igor_p2p.net.gossip import GossipService
from igor_p2p.net.host import parse_multiaddr, peer_info_from_addr
from igor_p2p.net.listening import wildcard_warning
from igor_p2p.node.config import NodeConfig
from igor_p2p.node.known_peers import SAVE_INTERVAL_S, KnownPeers
from igor_p2p.node.peers import PeerTable

log = get_logger(__name__)

FIRST_SAVE_S = 5.0
PEERSTORE_TTL_S = 24 * 3600
"""Addresses learned from announcements or the known-peers file stay dialable this long."""


def remember_addrs(host: IHost, peer_id: str, addrs: Iterable[str]) -> None:
    """Put ``addrs`` in the peerstore for ``peer_id`` (what ``new_stream`` dials); addresses
    that don't parse are skipped."""
    parsed = []
    for addr in addrs:
        try:
            maddr = parse_multiaddr(addr.split("/p2p/", 1)[0])
        except InvalidAddress:
            continue
        parsed.append(maddr)
    if not parsed:
        return
    try:
        host.get_peerstore().add_addrs(ID.from_base58(peer_id), parsed, PEERSTORE_TTL_S)
    except Exception:
        log.debug("cannot store addresses", peer=peer_id)


def bootstrap_candidates(bootstrap: Iterable[str]) -> list[DialCandidate]:
    out = []
    for addr in bootstrap:
        try:
            info = peer_info_from_addr(addr)
        except InvalidAddress:
            log.warning("bootstrap address without /p2p/<peer id> ignored: %s", addr)
            continue
        out.append(DialCandidate(str(info.peer_id), (addr,), explore=True))
    return out


class Connectivity:
    """The known-peers set and the connection manager of one node."""

    def __init__(
        self,
        host: IHost,
        gossip: GossipService,
        peers: PeerTable,
        config: NodeConfig,
        data_dir: Path,
    ) -> None:
        self.host = host
        self.gossip = gossip
        self.peers = peers
        self.config = config
        self.bootstrap = bootstrap_candidates(config.bootstrap)
        self.known = KnownPeers.in_data_dir(data_dir, peers.self_id).load()
        self.manager = ConnectionManager(
            host,
            Watermarks(low=config.connections_low, high=config.connections_high),
            self.candidates,
            self.protected,
        )
        self._rng = random.Random()

    def candidates(self) -> list[DialCandidate]:
        """Bootstrap peers, then peers heard announcing, then known peers from earlier runs.
        Peers not (or no longer) heard from are exploration candidates."""
        table = self.peers.peers
        out = [
            DialCandidate(c.peer, c.addrs, explore=c.peer not in table or not table[c.peer].up)
            for c in self.bootstrap
        ]
        for peer_id, entry in table.items():
            out.append(DialCandidate(peer_id, entry.announcement.addrs, explore=not entry.up))
        for known in self.known.most_recent():
            if known.peer_id not in table:
                out.append(DialCandidate(known.peer_id, known.addrs, explore=True))
        return out

    def protected(self) -> set[str]:
        """Gossip-mesh peers (every topic): trimming them would cut the mesh."""
        out: set[str] = set()
        for mesh in self.gossip.router.mesh.values():
            out.update(str(p) for p in mesh)
        return out

    def refresh_known(self) -> None:
        """Fold the peer table (peers up, with their announced addresses) into the known set."""
        now = trio.current_time()
        wall = time.time()
        for peer_id, entry in self.peers.peers.items():
            if entry.up:
                self.known.note(peer_id, entry.announcement.addrs, wall - (now - entry.last_seen))

    def seed_peerstore(self) -> None:
        for known in self.known.most_recent():
            remember_addrs(self.host, known.peer_id, known.addrs)
        for c in self.bootstrap:
            remember_addrs(self.host, c.peer, c.addrs)

    async def run(
        self, *, task_status: trio.TaskStatus[Connectivity] = trio.TASK_STATUS_IGNORED
    ) -> None:
        warning = wildcard_warning(self.config.listen, self.config.announce)
        if warning is not None:
            log.warning(warning)
        self.seed_peerstore()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.manager.run)
                nursery.start_soon(self._save_loop)
                task_status.started(self)
        finally:
            self.refresh_known()
            self.known.save()

    async def _save_loop(self) -> None:
        await trio.sleep(FIRST_SAVE_S)  # soon after start: a SIGKILL must not lose them all
        while True:
            self.refresh_known()
            self.known.save()
            await trio.sleep(SAVE_INTERVAL_S * self._rng.uniform(0.8, 1.2))


async def run_connectivity(
    host: IHost,
    gossip: GossipService,
    peers: PeerTable,
    config: NodeConfig,
    data_dir: Path,
    *,
    task_status: trio.TaskStatus[Connectivity] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The node's connectivity (see the module docstring), until cancelled; started with
    ``await nursery.start(run_connectivity, host, gossip, peers, config, data_dir)``."""
    await Connectivity(host, gossip, peers, config, data_dir).run(task_status=task_status)
