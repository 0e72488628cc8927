"""The peer table, built from signed gossip announcements, with liveness.

A peer that has not been heard from within its silence limit is marked down; hearing from it
again marks it up. The limit is ``down_after_s``, or ``DOWN_AFTER_INTERVALS`` of the peer's own
announce interval (``every_ms``, which it states in each announcement) when that is longer:
announce intervals stretch with the network's size (``discovery``), and a peer must not be
declared down for announcing exactly as often as it said it would. Gossip is a hint: the table
decides where an agent *might* go, never who owns it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from igor_p2p.bounded import BoundedLRU
from igor_p2p.errors import InvalidInput
from igor_p2p.net.ratelimit import PeerRateLimiter
from igor_p2p.runtime.metering import MAX_PRICE

ANNOUNCE_TOPIC = "igor/nodes/1"
PROTOCOL_VERSION = "igor-p2p/0.1"
MAX_ADDRS = 16
DOWN_AFTER_INTERVALS = 3.0
"""A peer is down after this many of its stated announce intervals of silence (at least
``down_after_s``)."""
MAX_EVERY_MS = 3_600_000
MAX_ANNOUNCED_COUNT = 1_000_000
"""Announced ``capacity`` and ``load`` above this are malformed (no node hosts that many)."""
MAX_PEERS = 4096
"""The peer table remembers at most this many peers (least recently heard evicted)."""
ANNOUNCE_RATE_PER_S = 5.0
ANNOUNCE_BURST = 20.0
"""Announcements from one sender beyond this rate are ignored (gossip flood, A3)."""


class MalformedAnnouncement(InvalidInput):
    """A node announcement with missing or wrong-typed fields."""


@dataclass(frozen=True)
class Announcement:
    """What a node gossips about itself every ``announce_interval_s``."""

    peer_id: str
    name: str
    addrs: tuple[str, ...]
    capacity: int
    price: int
    load: int
    """Agents hosted now."""
    version: str = PROTOCOL_VERSION
    every_ms: int = 0
    """The sender's current announce interval; 0 = not stated (old senders)."""

    def to_wire(self) -> dict[str, Any]:
        return {"type": "announce", **asdict(self), "addrs": list(self.addrs)}

    @classmethod
    def from_wire(cls, message: dict[str, Any]) -> Announcement:
        try:
            addrs = message["addrs"]
            if not isinstance(addrs, list) or len(addrs) > MAX_ADDRS:
                raise MalformedAnnouncement("addrs must be a short list")
            out = cls(
                peer_id=message["peer_id"],
                name=message["name"],
                addrs=tuple(addrs),
                capacity=message["capacity"],
                price=message["price"],
                load=message["load"],
                version=message["version"],
                every_ms=message.get("every_ms", 0),
            )
        except KeyError as exc:
            raise MalformedAnnouncement(f"missing field {exc}") from None
        for name in ("peer_id", "name", "version"):
            if not isinstance(getattr(out, name), str) or len(getattr(out, name)) > 256:
                raise MalformedAnnouncement(f"{name} must be a short string")
        for name, cap in (
            ("capacity", MAX_ANNOUNCED_COUNT),
            ("price", MAX_PRICE),
            ("load", MAX_ANNOUNCED_COUNT),
            ("every_ms", MAX_EVERY_MS),
        ):
            value = getattr(out, name)
            if type(value) is not int or not 0 <= value <= cap:
                raise MalformedAnnouncement(f"{name} must be an integer in [0, {cap}]")
        if out.every_ms > MAX_EVERY_MS:
            raise MalformedAnnouncement("every_ms must be at most an hour")
        if not all(isinstance(a, str) and len(a) < 512 for a in out.addrs):
            raise MalformedAnnouncement("addrs must be strings")
        return out


@dataclass
class PeerEntry:
    announcement: Announcement
    last_seen: float
    """trio time of the last announcement."""
    up: bool = True
    connected: bool = False

    def to_json(self, now: float) -> dict[str, Any]:
        a = self.announcement
        return {
            "peer_id": a.peer_id,
            "name": a.name,
            "addrs": list(a.addrs),
            "capacity": a.capacity,
            "price": a.price,
            "load": a.load,
            "version": a.version,
            "up": self.up,
            "connected": self.connected,
            "last_seen_s_ago": round(max(0.0, now - self.last_seen), 3),
        }


@dataclass
class PeerTable:
    """Peers this node has heard announcing themselves (at most ``max_peers``, least recently
    heard evicted; a sender announcing faster than ``ANNOUNCE_RATE_PER_S`` is ignored)."""

    self_id: str
    down_after_s: float
    max_peers: int = MAX_PEERS
    peers: BoundedLRU[str, PeerEntry] = field(init=False)
    flood: PeerRateLimiter = field(init=False)
    floor_s: float = 0.0
    """No peer is declared down before this much silence (discovery sets it from the network's
    size: announcements delayed by a busy network must not look like silence)."""

    def __post_init__(self) -> None:
        self.peers = BoundedLRU(self.max_peers)
        self.flood = PeerRateLimiter(ANNOUNCE_RATE_PER_S, ANNOUNCE_BURST, max_peers=self.max_peers)

    def observe(self, announcement: Announcement, now: float, seen_at: float | None = None) -> bool:
        """Record an announcement heard at ``seen_at`` (default ``now``; earlier when it was
        relayed by a peer's table sync); True when the peer is new or was down and is up now.
        An announcement older than what the table holds, or already past its silence limit,
        changes nothing."""
        if announcement.peer_id == self.self_id:
            return False
        if not self.flood.allow(announcement.peer_id, now):
            return False
        heard = now if seen_at is None else min(seen_at, now)
        entry = self.peers.get(announcement.peer_id)
        if entry is not None and heard < entry.last_seen:
            return False
        candidate = PeerEntry(announcement, heard)
        if now - heard > self.silence_limit(candidate):
            return False
        fresh = entry is None or not entry.up
        if entry is None:
            self.peers[announcement.peer_id] = candidate
        else:
            entry.announcement = announcement
            entry.last_seen = heard
            entry.up = True
        return fresh

    def credit(self, seconds: float) -> None:
        """Forgive ``seconds`` of silence: this node itself was not running (its event loop
        stalled, e.g. a saturated CPU), so it could not have heard anyone. Without this, one
        long stall marks every peer down at once although they all kept announcing."""
        if seconds <= 0:
            return
        for entry in self.peers.values():
            if entry.up:
                entry.last_seen += seconds

    def silence_limit(self, entry: PeerEntry) -> float:
        """Seconds of silence after which ``entry`` is marked down."""
        stated = entry.announcement.every_ms / 1000.0 * DOWN_AFTER_INTERVALS
        return max(self.down_after_s, stated, self.floor_s)

    def sweep(self, now: float) -> list[str]:
        """Mark peers not heard from recently as down; return the newly-down peer IDs."""
        downed = []
        for peer_id, entry in self.peers.items():
            if entry.up and now - entry.last_seen > self.silence_limit(entry):
                entry.up = False
                downed.append(peer_id)
        return downed

    def up_peers(self) -> list[PeerEntry]:
        return [e for e in self.peers.values() if e.up]

    def to_json(self, now: float) -> list[dict[str, Any]]:
        return [e.to_json(now) for e in sorted(self.peers.values(), key=_by_name)]


def _by_name(entry: PeerEntry) -> tuple[str, str]:
    return (entry.announcement.name, entry.announcement.peer_id)
