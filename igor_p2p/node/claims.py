"""Authority claims on gossip: hints that carry their own proof.

Every owner gossips, now and then, one claim per agent it ticks: ``(agent, epoch, record,
cert)`` — the certified record that started its epoch. A claim is only a *hint*: nothing a
claim says touches the store or stops an agent by itself. A node that holds an agent at a lower
epoch acts on a claim only with proof:

- the claim is for the very next epoch and its record and certificate verify against the
  custody this node holds; or
- otherwise, it asks the agent's witnesses (and the claimant) for their custody (STATUS, at most
  once per agent per ``query_interval_s``), and acts on what verifies.

Proof goes to the authority gate as ``Superseded`` (the table decides: a proven later epoch for
another node retires this copy). Forged, oversized, replayed or out-of-range claims are counted
and dropped; per-agent memory is bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from igor_p2p.authority.custody import (
    EpochStart,
    InvalidCustody,
    genesis_start,
    next_start,
    read_chain,
)
from igor_p2p.core.node_core import NodeCore
from igor_p2p.core.ports import AuthorityStore, Gossip, PeerUnreachable, Transport
from igor_p2p.errors import IgorError
from igor_p2p.lineage.entries import Checkpoint, decode_entry
from igor_p2p.logs import get_logger
from igor_p2p.wire.messages import Status, StatusReply

log = get_logger(__name__)

CLAIMS_TOPIC = "igor/claims/2"
MAX_CLAIMS_PER_MESSAGE = 256
MAX_EPOCH = 2**63 - 1
MAX_BLOB = 4096
MAX_TRACKED_AGENTS = 10_000


@dataclass(frozen=True)
class Claim:
    agent: str
    epoch: int
    record: bytes
    cert: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"agent": self.agent, "epoch": self.epoch, "record": self.record, "cert": self.cert}

    @classmethod
    def from_wire(cls, value: Any) -> Claim | None:
        """A well-formed claim, or None (never an exception) for anything else."""
        if not isinstance(value, dict) or set(value) != {"agent", "epoch", "record", "cert"}:
            return None
        agent, epoch, record, cert = value["agent"], value["epoch"], value["record"], value["cert"]
        if not isinstance(agent, str) or not 0 < len(agent) <= 128:
            return None
        if type(epoch) is not int or not 1 <= epoch <= MAX_EPOCH:
            return None
        for blob in (record, cert):
            if not isinstance(blob, bytes) or len(blob) > MAX_BLOB:
                return None
        return cls(agent, epoch, record, cert)


@dataclass
class ClaimCounts:
    """What became of the claims this node heard (``igor node status`` shows them)."""

    heard: int = 0
    ignored: int = 0
    """Malformed, or unproven for the very next epoch: dropped, nothing changed."""
    asked: int = 0
    """Claims of a later epoch that made this node ask the agent's witnesses (rate-limited)."""
    proven: int = 0
    """Claims whose proof verified against the custody this node holds (fed to the gate)."""

    def to_json(self) -> dict[str, int]:
        return {
            "heard": self.heard,
            "ignored": self.ignored,
            "asked": self.asked,
            "proven": self.proven,
        }


class ClaimGossip:
    """Publishes this node's claims and checks others' against proof."""

    def __init__(
        self,
        *,
        core: NodeCore,
        store: AuthorityStore,
        transport: Transport,
        gossip: Gossip,
        interval_s: Callable[[], float],
        counts: ClaimCounts | None = None,
        query_interval_s: float = 10.0,
    ) -> None:
        self.counts = counts if counts is not None else ClaimCounts()
        self.core = core
        self.store = store
        self.transport = transport
        self.gossip = gossip
        self.interval_s = interval_s
        self.query_interval_s = query_interval_s
        self.mine: OrderedDict[str, Claim] = OrderedDict()
        self._asked: OrderedDict[str, float] = OrderedDict()
        self._answered: OrderedDict[str, float] = OrderedDict()
        """When each agent's conflicting claim was last answered with ours (bounded)."""
        self._nursery: trio.Nursery | None = None

    # ---------------------------------------------------------------- publishing

    def publish(self, agent: str, start: EpochStart | None, epoch: int) -> None:
        """The gate's PublishClaim: remember our claim and gossip it soon. Epoch 1's proof is
        the genesis itself (signed by the agent key), so that two geneses of one agent (a
        launcher that reused a key) meet and both halt."""
        if start is None:  # a launch or an import: the store holds the epoch's start
            self.mine.pop(agent, None)
            if self._nursery is not None:
                self._nursery.start_soon(self._publish_stored, agent, epoch)
            return
        proof = (start.genesis, b"") if start.is_genesis else (start.record, start.cert)
        if len(proof[0]) > MAX_BLOB or len(proof[1]) > MAX_BLOB:
            self.mine.pop(agent, None)  # an imported genesis with a big state: not gossiped
            return
        self.mine[agent] = Claim(agent, epoch, *proof)
        while len(self.mine) > MAX_TRACKED_AGENTS:
            self.mine.popitem(last=False)
        if self._nursery is not None:
            self._nursery.start_soon(self._send, [self.mine[agent]])

    async def _publish_stored(self, agent: str, epoch: int) -> None:
        try:
            custody = await self.store.custody(agent)
        except IgorError as exc:
            log.debug("no custody to claim: %s", exc, agent=agent, epoch=epoch)
            return
        if custody and custody[-1].epoch == epoch:
            self.publish(agent, custody[-1], epoch)

    async def _send(self, claims: Sequence[Claim]) -> None:
        try:
            await self.gossip.publish(
                CLAIMS_TOPIC, {"type": "claims", "claims": [c.to_wire() for c in claims]}
            )
        except Exception as exc:  # gossip is a hint
            log.debug("claim publish failed: %s", exc)

    async def _publish_loop(self) -> None:
        while True:
            await trio.sleep(self.interval_s())
            ticking = set(self.core.ports.runner.ticking())
            claims = [c for a, c in self.mine.items() if a in ticking]
            for i in range(0, len(claims), MAX_CLAIMS_PER_MESSAGE):
                await self._send(claims[i : i + MAX_CLAIMS_PER_MESSAGE])

    # ---------------------------------------------------------------- observing

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        subscription = await self.gossip.subscribe(CLAIMS_TOPIC)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._publish_loop)
            task_status.started()
            async for message in subscription:
                claims = message.get("claims") if isinstance(message, dict) else None
                if not isinstance(claims, list):
                    self.counts.heard += 1
                    self.counts.ignored += 1
                    continue
                for raw in claims[:MAX_CLAIMS_PER_MESSAGE]:
                    self.counts.heard += 1
                    claim = Claim.from_wire(raw)
                    if claim is None:
                        self.counts.ignored += 1
                        continue
                    await self.observe(claim)

    async def observe(self, claim: Claim) -> None:
        """Act on a claim only with proof (never raises)."""
        view = self.core.describe(claim.agent)
        if view is None or claim.epoch < view["epoch"]:
            return
        if claim.epoch == view["epoch"]:
            await self._same_epoch(claim)
            return
        try:
            custody = await self.store.custody(claim.agent)
            if custody and claim.epoch == custody[-1].epoch + 1:
                try:
                    start = next_start(custody[-1], claim.record, claim.cert)
                except InvalidCustody:
                    self.counts.ignored += 1
                    return
                await self._prove(claim.agent, start)
                return
            if custody and self._may_ask(claim.agent) and self._nursery is not None:
                self.counts.asked += 1
                self._nursery.start_soon(self._ask_witnesses, claim.agent, custody)
            else:
                self.counts.ignored += 1
        except IgorError as exc:
            log.debug("claim check failed: %s", exc, agent=claim.agent)

    async def _same_epoch(self, claim: Claim) -> None:
        """A claim for the epoch this node holds: if it proves a *different* start of that
        epoch (another genesis, another certified record), the gate halts the agent."""
        try:
            custody = await self.store.custody(claim.agent)
            mine = custody[-1] if custody and custody[-1].epoch == claim.epoch else None
            if mine is None or claim.record in (mine.genesis, mine.record):
                return
            if claim.epoch == 1:
                genesis = decode_entry(claim.record)
                if not isinstance(genesis, Checkpoint) or genesis.agent != claim.agent:
                    self.counts.ignored += 1
                    return
                other = genesis_start(genesis)
            elif len(custody) >= 2:
                other = next_start(custody[-2], claim.record, claim.cert)
            else:
                return
        except (InvalidCustody, IgorError):
            self.counts.ignored += 1
            return
        if other.digest != mine.digest:
            if self._may_answer(claim.agent):
                # Answer with our own proof at once: the other owner may have halted us before
                # it published again, and must learn of the conflict too (MC-9: both stop).
                self._answer(claim.agent, mine)
            await self._prove(claim.agent, other)

    def _may_answer(self, agent: str) -> bool:
        now = trio.current_time()
        last = self._answered.get(agent)
        if last is not None and now - last < self.query_interval_s:
            return False
        self._answered[agent] = now
        self._answered.move_to_end(agent)
        while len(self._answered) > MAX_TRACKED_AGENTS:
            self._answered.popitem(last=False)
        return True

    def _answer(self, agent: str, mine: EpochStart) -> None:
        proof = (mine.genesis, b"") if mine.is_genesis else (mine.record, mine.cert)
        if len(proof[0]) <= MAX_BLOB and len(proof[1]) <= MAX_BLOB and self._nursery is not None:
            self._nursery.start_soon(self._send, [Claim(agent, mine.epoch, *proof)])

    def _may_ask(self, agent: str) -> bool:
        now = trio.current_time()
        last = self._asked.get(agent)
        if last is not None and now - last < self.query_interval_s:
            return False
        self._asked[agent] = now
        self._asked.move_to_end(agent)
        while len(self._asked) > MAX_TRACKED_AGENTS:
            self._asked.popitem(last=False)
        return True

    async def _ask_witnesses(self, agent: str, custody: list[EpochStart]) -> None:
        known = custody[-1]
        me = self.transport.me
        best: list[EpochStart] = []

        async def ask(node: bytes) -> None:
            nonlocal best
            try:
                reply = await self.transport.request(node, Status(me, agent, known.epoch), 5.0)
            except PeerUnreachable:
                return
            if not isinstance(reply, StatusReply) or reply.agent != agent:
                return
            try:
                starts = read_chain(reply.chain_after, reply.chain, known)
            except InvalidCustody:
                return
            if starts and (not best or starts[-1].epoch > best[-1].epoch):
                best = starts

        async with trio.open_nursery() as nursery:
            for node in known.witnesses:
                if node != me:
                    nursery.start_soon(ask, node)
        if best:
            await self._prove(agent, best[-1])

    async def _prove(self, agent: str, latest: EpochStart) -> None:
        try:
            custody = await self.store.custody(agent)
        except IgorError:
            custody = []
        held = next((s for s in custody if s.epoch == latest.epoch), None)
        if held is not None and (held.record, held.genesis) == (latest.record, latest.genesis):
            return  # the start we hold (perhaps with another quorum's certificate): no news
        if held is None and latest.owner == self.transport.me:
            view = self.core.describe(agent)
            if view is not None and view["epoch"] == latest.epoch:
                return  # the epoch being handed to us, certified before its COMMIT arrived
        self.counts.proven += 1
        try:
            await self.core.superseded(agent, latest)
        except IgorError as exc:
            log.info("proof not applicable: %s", exc, agent=agent)


Prover = Callable[[str, EpochStart], Awaitable[None]]
