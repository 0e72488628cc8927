"""Where a wandering agent goes: a placement policy over the peer table."""

from __future__ import annotations

import random
from collections.abc import Sequence

from igor_p2p.agent.manifest import MigrationPolicy
from igor_p2p.node.peers import PeerEntry


def eligible(peers: Sequence[PeerEntry], policy: MigrationPolicy) -> list[PeerEntry]:
    """Peers that are up, have room, and are within the agent's price ceiling."""
    if not policy.enabled:
        return []
    out = []
    for entry in peers:
        a = entry.announcement
        if not entry.up or a.load >= a.capacity:
            continue
        if policy.max_price_per_second is not None and a.price > policy.max_price_per_second:
            continue
        out.append(entry)
    return out


def choose_target(
    name: str, peers: Sequence[PeerEntry], policy: MigrationPolicy, rng: random.Random | None = None
) -> str | None:
    """The peer ID chosen by policy ``random``, ``cheapest`` or ``least-loaded``; None if none."""
    candidates = eligible(peers, policy)
    if not candidates:
        return None
    if name == "cheapest":
        best = min(candidates, key=lambda e: (e.announcement.price, e.announcement.peer_id))
    elif name == "least-loaded":
        best = min(
            candidates,
            key=lambda e: (
                e.announcement.load / max(1, e.announcement.capacity),
                e.announcement.peer_id,
            ),
        )
    else:
        best = (rng or random).choice(candidates)
    return best.announcement.peer_id
