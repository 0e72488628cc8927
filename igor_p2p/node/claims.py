"""Authority claims on gossip: fork and stale-owner detection (MC-9, FS-4).

Every owner gossips, about once a second, a claim per agent it ticks: (agent, epoch, head).
Gossip is signed by its originator and the claim's owner must be that originator, so a node
cannot claim for another. A node that ticks an agent and hears a claim for a *higher* epoch
stops and enters RECOVERY_REQUIRED (it is a stale owner); two different owners claiming the
*same* epoch send both to RECOVERY_REQUIRED. Claims are a hint that can only stop ticking;
they never grant authority.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from igor_p2p.logs import get_logger
from igor_p2p.net.gossip import publish_message, subscribe_messages

if TYPE_CHECKING:
    from igor_p2p.node.node import Node

log = get_logger(__name__)

CLAIMS_TOPIC = "igor/claims/1"
MAX_CLAIMS_PER_MESSAGE = 2000


class ClaimBook:
    """Publishes our claims and reacts to others'."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.highest_seen: dict[str, int] = {}
        self.heads: dict[str, tuple[int, bytes]] = {}
        self.ignored = 0

    def highest(self, did: str) -> int:
        return self.highest_seen.get(did, 0)

    def note_head(self, did: str, epoch: int, digest: bytes) -> None:
        self.heads[did] = (epoch, digest)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        parts = self.node.running
        subscription = await subscribe_messages(parts.gossip, CLAIMS_TOPIC)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish_loop)
            task_status.started()
            async for gossip in subscription:
                if gossip.message.get("type") != "claims":
                    continue
                claims = gossip.message.get("claims")
                if not isinstance(claims, list):
                    self.ignored += 1
                    continue
                for claim in claims[:MAX_CLAIMS_PER_MESSAGE]:
                    await self._observe(gossip.sender, claim)

    async def _observe(self, sender: str, claim: Any) -> None:
        if not isinstance(claim, dict):
            self.ignored += 1
            return
        did, epoch = claim.get("agent"), claim.get("epoch")
        if not isinstance(did, str) or type(epoch) is not int or epoch < 1:
            self.ignored += 1
            return
        if epoch > self.highest_seen.get(did, 0):
            self.highest_seen[did] = epoch
        parts = self.node.running
        agent = parts.scheduler.agents.get(did)
        if agent is None or self.node.handoff is None:
            return
        if epoch > agent.epoch or (epoch == agent.epoch and sender != parts.services.peer_id):
            evidence = f"claim by {sender} for epoch {epoch}"
            ours = agent.epoch
            await self.node.handoff.observe_epoch(did, epoch, sender, evidence)
            if epoch == ours and did not in parts.scheduler.agents:
                # MC-9: we stopped for a same-epoch claim and no longer gossip ours; echo it
                # once so the other owner stops too (a claim can only stop ticking).
                await self._echo_claim(did, ours)

    async def _echo_claim(self, did: str, epoch: int) -> None:
        parts = self.node.running
        claim = {"agent": did, "epoch": epoch}
        try:
            await publish_message(
                parts.gossip,
                CLAIMS_TOPIC,
                {"type": "claims", "owner": parts.services.peer_id, "claims": [claim]},
            )
        except Exception as exc:  # gossip is a hint
            log.debug("claim echo failed: %s", exc)

    async def _publish_loop(self) -> None:
        while True:
            await trio.sleep(self.node.config.announce_interval_s)
            parts = self.node.running
            claims = [
                {"agent": did, "epoch": agent.epoch}
                for did, agent in list(parts.scheduler.agents.items())[:MAX_CLAIMS_PER_MESSAGE]
                if not agent.paused
            ]
            if not claims:
                continue
            try:
                await publish_message(
                    parts.gossip,
                    CLAIMS_TOPIC,
                    {"type": "claims", "owner": parts.services.peer_id, "claims": claims},
                )
            except Exception as exc:  # gossip is a hint
                log.debug("claim publish failed: %s", exc)
