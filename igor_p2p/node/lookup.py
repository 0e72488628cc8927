"""Where an agent lives, as proof rather than hearsay (``igor agent status`` for a remote agent).

Hints come from the DHT location record and from this node's own record of where the agent went
(a retired record's successor). A hint is followed by asking that node for its custody (STATUS
from epoch 0): the answer verifies from the agent's genesis — the agent key's signature, then
every certified custody record — or it does not count. A self-signed location record or a lying
peer therefore cannot make ``status`` name a false owner: at worst the answer stays unverified.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from igor_p2p.authority.custody import EpochStart, InvalidCustody, read_chain
from igor_p2p.core.ports import PeerUnreachable, Transport
from igor_p2p.net.peerid import peer_id_from_public_key
from igor_p2p.wire.messages import Holding, Status, StatusReply

MAX_HOPS = 8


@dataclass(frozen=True)
class Found:
    """A verified answer: ``owner`` holds ``epoch`` (proven from the genesis)."""

    node: bytes
    epoch: int
    holding: Holding
    verified: bool
    latest: EpochStart | None


async def ask(transport: Transport, node: bytes, agent: str, timeout: float) -> Found | None:
    """The custody ``node`` can prove for ``agent``, verified from the genesis."""
    try:
        reply = await transport.request(node, Status(transport.me, agent, 0), timeout)
    except PeerUnreachable:
        return None
    if not isinstance(reply, StatusReply) or reply.agent != agent:
        return None
    try:
        starts = read_chain(reply.chain_after, reply.chain, None)
    except InvalidCustody:
        starts = []
    latest = starts[-1] if starts and starts[0].agent == agent else None
    verified = latest is not None and latest.owner == node and reply.epoch == latest.epoch
    return Found(node, reply.epoch, reply.holding, verified, latest)


async def locate(
    transport: Transport,
    agent: str,
    hints: list[bytes],
    *,
    timeout: float = 5.0,
    on_hop: Callable[[Found], Awaitable[None]] | None = None,
) -> tuple[Found | None, int]:
    """Follow hints (and the custody each answer proves) to the node that owns the agent.

    Returns the best answer and how many nodes were asked.
    """
    seen: set[bytes] = set()
    queue = list(hints)
    best: Found | None = None
    asked = 0
    while queue and asked < MAX_HOPS:
        node = queue.pop(0)
        if node in seen:
            continue
        seen.add(node)
        found = await ask(transport, node, agent, timeout)
        asked += 1
        if found is None:
            continue
        if on_hop is not None:
            await on_hop(found)
        if found.verified and found.holding is Holding.OWNER:
            return found, asked
        if found.latest is not None and (best is None or _later(found, best)):
            best = found
        if found.latest is not None and found.latest.owner not in seen:
            queue.insert(0, found.latest.owner)
    return best, asked


def _later(a: Found, b: Found) -> bool:
    return (a.latest.epoch if a.latest else 0) > (b.latest.epoch if b.latest else 0)


def describe_found(agent: str, found: Found | None, hops: int) -> dict[str, Any]:
    """The remote part of ``agent status`` (one schema, see docs/cli.md)."""
    if found is None:
        return {"agent": agent, "found": False, "state": "UNKNOWN", "hops": hops}
    owner = found.latest.owner if found.latest is not None else found.node
    return {
        "agent": agent,
        "found": True,
        "state": "ACTIVE_OWNER" if found.holding is Holding.OWNER else found.holding.value,
        "epoch": found.latest.epoch if found.latest is not None else found.epoch,
        "owner_peer": peer_id_from_public_key(owner),
        "verified": found.verified,
        "hops": hops,
    }
