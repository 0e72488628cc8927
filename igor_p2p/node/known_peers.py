"""Known peers, kept in the data directory so that a restarted node rejoins at once.

A restarted node used to forget every peer it knew: until announcements reached it again it
could only dial its bootstrap list, and a migration right after a restart failed with "no
known addresses". :class:`KnownPeers` is a small, bounded JSON file (``known-peers.json``):
each peer's ID, up to :data:`MAX_ADDRS_PER_PEER` dialable addresses, and when it was last
heard. At start the node redials these peers (with backoff, alongside the bootstrap list) and
puts their addresses in its peerstore; while running it writes the file every
:data:`SAVE_INTERVAL_S` and when it stops.

The file is a hint, like the peer table: a missing, unreadable, oversized or malformed file
is an empty list (logged), never a failed start. Not py-libp2p's persistent peerstore (G25): that
writes synchronously on every identify and stores the node's private key in plaintext.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from igor_p2p.logs import get_logger
from igor_p2p.net.peerid import InvalidPeerId, public_key_from_peer_id_text

log = get_logger(__name__)

FILE_NAME = "known-peers.json"
FORMAT_VERSION = 1
MAX_KNOWN_PEERS = 256
MAX_ADDRS_PER_PEER = 8
MAX_ADDR_CHARS = 256
MAX_FILE_BYTES = 512 * 1024
SAVE_INTERVAL_S = 30.0
WILDCARD_PREFIXES = ("/ip4/0.0.0.0/", "/ip6/::/")


@dataclass(frozen=True)
class KnownPeer:
    peer_id: str
    addrs: tuple[str, ...]
    last_seen_unix: float


def usable_addrs(addrs: Iterable[object]) -> tuple[str, ...]:
    """Addresses worth keeping: short strings, not wildcards (G24), at most
    :data:`MAX_ADDRS_PER_PEER`, duplicates dropped, order kept."""
    out: list[str] = []
    for addr in addrs:
        if not isinstance(addr, str) or not addr.startswith("/") or len(addr) > MAX_ADDR_CHARS:
            continue
        if addr.startswith(WILDCARD_PREFIXES) or addr in out:
            continue
        out.append(addr)
        if len(out) == MAX_ADDRS_PER_PEER:
            break
    return tuple(out)


def _valid_peer_id(peer_id: object) -> bool:
    if not isinstance(peer_id, str):
        return False
    try:
        public_key_from_peer_id_text(peer_id)
    except InvalidPeerId:
        return False
    return True


@dataclass
class KnownPeers:
    """The bounded set of peers this node knows, by peer ID (most recently seen kept)."""

    path: Path
    self_id: str = ""
    max_peers: int = MAX_KNOWN_PEERS
    peers: dict[str, KnownPeer] = field(default_factory=dict)

    @classmethod
    def in_data_dir(cls, root: Path, self_id: str = "") -> KnownPeers:
        return cls(root / FILE_NAME, self_id)

    def load(self) -> KnownPeers:
        """Read the file (if any) into this set; problems are logged and ignored."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return self
        except OSError as exc:
            log.warning("cannot read %s: %s; starting without known peers", self.path, exc)
            return self
        if len(raw) > MAX_FILE_BYTES:
            log.warning("%s is larger than %d bytes; ignored", self.path, MAX_FILE_BYTES)
            return self
        try:
            document = json.loads(raw)
        except ValueError:
            log.warning("%s is not JSON; ignored", self.path)
            return self
        entries = document.get("peers") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            log.warning("%s has no peer list; ignored", self.path)
            return self
        for entry in entries:
            if isinstance(entry, dict):
                self._load_entry(entry)
        return self

    def _load_entry(self, entry: dict[str, Any]) -> None:
        peer_id, last_seen = entry.get("peer_id"), entry.get("last_seen")
        if not _valid_peer_id(peer_id) or peer_id == self.self_id:
            return
        if not isinstance(last_seen, int | float) or isinstance(last_seen, bool):
            return
        if not (0 <= last_seen < 1e12):
            return
        addrs = usable_addrs(entry.get("addrs") or ())
        if addrs:
            self.note(str(peer_id), addrs, float(last_seen))

    def note(self, peer_id: str, addrs: Iterable[object], now_unix: float | None = None) -> None:
        """Remember ``peer_id`` at ``addrs`` (seen now); the set stays within ``max_peers``
        by forgetting the peer heard from longest ago."""
        if peer_id == self.self_id:
            return
        usable = usable_addrs(addrs)
        if not usable:
            return
        seen = time.time() if now_unix is None else now_unix
        self.peers[peer_id] = KnownPeer(peer_id, usable, seen)
        while len(self.peers) > self.max_peers:
            oldest = min(self.peers.values(), key=lambda p: p.last_seen_unix)
            del self.peers[oldest.peer_id]

    def most_recent(self) -> list[KnownPeer]:
        return sorted(self.peers.values(), key=lambda p: -p.last_seen_unix)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "peers": [
                {
                    "peer_id": p.peer_id,
                    "addrs": list(p.addrs),
                    "last_seen": round(p.last_seen_unix, 3),
                }
                for p in self.most_recent()
            ],
        }

    def save(self) -> None:
        """Write the file atomically (mode 0600); an error is logged, not raised."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)
