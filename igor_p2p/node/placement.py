"""Where a wandering agent goes: a placement policy over the peer table.

Announcements are self-reported, so placement trusts them only within sane ranges: an announced
capacity counts for at most :data:`MAX_TRUSTED_CAPACITY` agents, and a peer's price is only what
the decoder already bounded. What this node has *seen* counts for more: :class:`HopHistory`
records how each hop this node started ended, and a peer whose hops kept failing (it rejected,
hung or vanished) is left out until it has proved itself again. Among equal candidates, the peer
with more completed hops is preferred.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from igor_p2p.agent.manifest import MigrationPolicy
from igor_p2p.bounded import BoundedLRU
from igor_p2p.node.peers import PeerEntry

MAX_TRUSTED_CAPACITY = 100_000
"""No announced capacity counts for more than this (the most a node can be configured with)."""
DISTRUST_AFTER_FAILURES = 3
"""A peer with at least this many failed hops, and more failures than completed ones, is
skipped by placement."""
MAX_REMEMBERED_PEERS = 4096


@dataclass
class HopRecord:
    completed: int = 0
    failed: int = 0


class HopHistory:
    """How the hops this node started to each peer ended (bounded per-peer state)."""

    def __init__(self, max_peers: int = MAX_REMEMBERED_PEERS) -> None:
        self._records: BoundedLRU[str, HopRecord] = BoundedLRU(max_peers)

    def record(self, peer: str, *, completed: bool) -> None:
        entry = self._records.get(peer)
        if entry is None:
            entry = self._records[peer] = HopRecord()
        if completed:
            entry.completed += 1
        else:
            entry.failed += 1

    def of(self, peer: str) -> HopRecord:
        return self._records.peek(peer) or HopRecord()

    def distrusted(self, peer: str) -> bool:
        entry = self.of(peer)
        return entry.failed >= DISTRUST_AFTER_FAILURES and entry.failed > entry.completed


def trusted_capacity(entry: PeerEntry) -> int:
    return min(entry.announcement.capacity, MAX_TRUSTED_CAPACITY)


def eligible(
    peers: Sequence[PeerEntry], policy: MigrationPolicy, history: HopHistory | None = None
) -> list[PeerEntry]:
    """Peers that are up, have room, are within the agent's price ceiling and not distrusted."""
    if not policy.enabled:
        return []
    out = []
    for entry in peers:
        a = entry.announcement
        if not entry.up or a.load >= trusted_capacity(entry):
            continue
        if policy.max_price_per_second is not None and a.price > policy.max_price_per_second:
            continue
        if history is not None and history.distrusted(a.peer_id):
            continue
        out.append(entry)
    return out


def choose_target(
    name: str,
    peers: Sequence[PeerEntry],
    policy: MigrationPolicy,
    rng: random.Random | None = None,
    history: HopHistory | None = None,
) -> str | None:
    """The peer ID chosen by policy ``random``, ``cheapest`` or ``least-loaded``; None if none."""
    candidates = eligible(peers, policy, history)
    if not candidates:
        return None
    seen = history or HopHistory()

    def proven(e: PeerEntry) -> int:
        return -seen.of(e.announcement.peer_id).completed

    if name == "cheapest":
        best = min(
            candidates, key=lambda e: (e.announcement.price, proven(e), e.announcement.peer_id)
        )
    elif name == "least-loaded":
        best = min(
            candidates,
            key=lambda e: (
                e.announcement.load / max(1, trusted_capacity(e)),
                proven(e),
                e.announcement.peer_id,
            ),
        )
    else:
        best = (rng or random).choice(candidates)
    return best.announcement.peer_id
