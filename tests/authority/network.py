"""Witnesses and claims wired by direct calls (no trio, no I/O) for the authority tests.

:class:`WitnessNode` drives a real :class:`WitnessCore` the way the node's witness driver does:
the new record and the learned custody become "durable" (kept in memory) before the reply leaves,
and a NACK that asks for it gets the stored custody attached. :func:`run_claim` delivers every
:class:`SendTo` of a :class:`Claim` to the right witness and feeds the reply back, until the claim
has an outcome or nothing is left to send.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from igor_p2p.authority.claim import Claim, ClaimOutcome, ClaimPhase, SendTo
from igor_p2p.authority.custody import EpochStart, chain_after
from igor_p2p.authority.witness import WitnessCore, WitnessRecord
from igor_p2p.lineage.identity import Keypair
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import Accept, Learn, Nack, Prepare


@dataclass
class WitnessNode:
    key: Keypair
    records: dict[str, WitnessRecord] = field(default_factory=dict)
    custody: dict[str, list[EpochStart]] = field(default_factory=dict)
    """The verified custody this node stored as a witness, per agent (from the genesis)."""
    up: bool = True
    handled: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.core = WitnessCore(self.key)

    @property
    def me(self) -> bytes:
        return self.key.public_key

    def knows(self, starts: list[EpochStart]) -> WitnessNode:
        """Seed the store: this witness learned ``starts`` (from the genesis) earlier."""
        agent = starts[0].agent
        self.records[agent] = WitnessRecord(agent=agent, chosen=starts[-1])
        self.custody[agent] = list(starts)
        return self

    def forget(self, agent: str, starts: list[EpochStart] | None = None) -> None:
        """Restore this witness's store from an old disk (amnesia)."""
        self.records.pop(agent, None)
        self.custody.pop(agent, None)
        if starts:
            self.knows(starts)

    def chosen(self, agent: str) -> int:
        record = self.records.get(agent)
        return record.chosen.epoch if record else 0

    def handle(self, message: Prepare | Accept | Learn) -> Message:
        self.handled.append(message)
        agent = message.agent
        record = self.records.get(agent)
        if isinstance(message, Prepare):
            step = self.core.prepare(record, message)
        elif isinstance(message, Accept):
            step = self.core.accept(record, message)
        else:
            step = self.core.learn(record, message)
        if step.record is not None:
            self.records[agent] = step.record
        if step.learned:
            first = step.learned[0].epoch
            self.custody[agent] = [*self.custody.get(agent, [])[: first - 1], *step.learned]
        reply = step.reply
        if step.chain_after is not None and isinstance(reply, Nack):
            after, chain = chain_after(self.custody.get(agent, []), step.chain_after)
            reply = replace(reply, chain_after=after, chain=chain)
        return reply


class Network:
    """Witness nodes by key; ``deliver`` runs a request on the addressed node."""

    def __init__(self, nodes: Iterable[WitnessNode]) -> None:
        self.nodes = {n.me: n for n in nodes}
        self.sent: list[SendTo] = []

    def __getitem__(self, key: Keypair) -> WitnessNode:
        return self.nodes[key.public_key]

    def down(self, *keys: Keypair) -> None:
        for k in keys:
            self.nodes[k.public_key].up = False

    def up(self, *keys: Keypair) -> None:
        for k in keys:
            self.nodes[k.public_key].up = True

    def reachable(self, node: bytes) -> bool:
        return node in self.nodes and self.nodes[node].up

    def deliver(self, send: SendTo) -> Message:
        self.sent.append(send)
        assert isinstance(send.message, Prepare | Accept | Learn)
        return self.nodes[send.node].handle(send.message)

    def learn(self, starts: list[EpochStart], after: int = 0) -> None:
        """What the owner's ``Learn`` action does: tell every reachable witness of the old and
        the new set of the last epoch in ``starts`` that it was chosen."""
        start = starts[-1]
        previous = starts[-2]
        members = set(previous.witnesses) | set(start.witnesses)
        after, chain = chain_after(starts, after)
        for member in sorted(members):
            if self.reachable(member):
                self.nodes[member].handle(Learn(b"\x00" * 32, start.agent, after, chain))


Filter = Callable[[SendTo], bool]


def run_claim(
    claim: Claim,
    net: Network,
    *,
    value: bytes | None = None,
    drop: Filter | None = None,
    stop_after: Filter | None = None,
) -> ClaimOutcome | None:
    """Drive ``claim`` to an outcome: unreachable witnesses count as refusals, ``value`` is
    provided if phase 1 finds nothing to adopt. ``drop`` loses a request on the way (no reply:
    the claim waits, as it would until its deadline); ``stop_after`` ends the run right after
    delivering a matching request (a proposer that crashed)."""
    queue: deque[SendTo] = deque(claim.start())
    while True:
        if not queue and claim.phase is ClaimPhase.WAITING_VALUE and value is not None:
            queue.extend(claim.provide_value(value))
        if not queue:
            return claim.outcome
        send = queue.popleft()
        if drop is not None and drop(send):
            continue
        if not net.reachable(send.node):
            queue.extend(claim.on_unreachable(send.node))
            continue
        reply = net.deliver(send)
        if stop_after is not None and stop_after(send):
            return claim.outcome
        queue.extend(claim.on_reply(send.node, reply))
