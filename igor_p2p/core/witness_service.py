"""The witness driver: one lock per agent, the pure witness core, durable before every reply.

Also answers STATUS, combining what the node knows as a witness with what it holds itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import trio

from igor_p2p.authority.custody import chain_after
from igor_p2p.authority.record import ABSENT, Phase
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.witness import WitnessCore, WitnessRecord, WitnessStep
from igor_p2p.core.gate import Gate
from igor_p2p.core.ports import AuthorityStore, WitnessUsage, link_bytes
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import (
    Accept,
    Holding,
    Learn,
    Nack,
    Prepare,
    Refused,
    RefusedCode,
    Status,
    StatusReply,
)

MAX_WITNESS_LOCKS = 100_000


def holding_of(state: object, phase: Phase, certified: int, epoch: int) -> Holding:
    """How a node describes its own hold on an agent to others."""
    if state is ABSENT:
        return Holding.NONE
    if state is AuthorityState.ACTIVE_OWNER:
        if phase is Phase.HANDING_OFF:
            return Holding.HANDING_OFF
        if phase is Phase.TICKING and certified == epoch:
            return Holding.OWNER
        return Holding.CLAIMING
    return {
        AuthorityState.HANDOFF_PENDING: Holding.PENDING,
        AuthorityState.RETIRED: Holding.RETIRED,
        AuthorityState.HALTED: Holding.HALTED,
        AuthorityState.RECOVERY_REQUIRED: Holding.RECOVERY_REQUIRED,
        AuthorityState.BUDGET_EXHAUSTED: Holding.BUDGET_EXHAUSTED,
    }.get(state, Holding.NONE)  # type: ignore[call-overload]


@dataclass(frozen=True)
class WitnessQuota:
    """How much a node keeps as a witness: a request about an agent it does not witness yet is
    refused (REFUSED ``BUSY``, nothing written) when that agent would not fit. Agents it already
    witnesses are always served, so honest agents never lose a witness to a flood of new ones."""

    max_agents: int
    max_bytes: int


class WitnessService:
    """Serves PREPARE, ACCEPT, LEARN and STATUS for one node."""

    def __init__(
        self, core: WitnessCore, store: AuthorityStore, gate: Gate, quota: WitnessQuota
    ) -> None:
        self.core = core
        self.store = store
        self.gate = gate
        self.quota = quota
        self._locks: dict[str, trio.Lock] = {}
        self._usage: WitnessUsage | None = None
        self._admitting = trio.Lock()
        """Held from a new agent's quota check to its write (two new agents cannot both take
        the last place)."""
        self.refused_full = 0
        """Requests about new agents refused because the quota was reached."""

    async def usage(self) -> WitnessUsage:
        if self._usage is None:
            self._usage = await self.store.witness_usage()
        return self._usage

    async def _fits(self, step: WitnessStep) -> bool:
        usage = await self.usage()
        size = sum(link_bytes(s) for s in step.learned)
        return usage.agents < self.quota.max_agents and usage.bytes + size <= self.quota.max_bytes

    def _lock(self, agent: str) -> trio.Lock:
        lock = self._locks.get(agent)
        if lock is None:
            if len(self._locks) >= MAX_WITNESS_LOCKS:
                for key in [k for k, v in self._locks.items() if not v.locked()]:
                    del self._locks[key]
            lock = self._locks[agent] = trio.Lock()
        return lock

    async def handle(self, message: Prepare | Accept | Learn) -> Message:
        agent = message.agent
        async with self._lock(agent):
            record = await self.store.witness(agent)
            if isinstance(message, Prepare):
                step = self.core.prepare(record, message)
            elif isinstance(message, Accept):
                step = self.core.accept(record, message)
            else:
                step = self.core.learn(record, message)
            if step.record is not None or step.learned:
                if record is None:
                    async with self._admitting:
                        if not await self._fits(step):
                            self.refused_full += 1
                            return Refused(
                                self.core.me,
                                RefusedCode.BUSY,
                                "this node witnesses as many agents as its quota allows",
                            )
                        await self._commit(agent, record, step)
                else:
                    await self._commit(agent, record, step)
            reply = step.reply
            if step.chain_after is not None and isinstance(reply, Nack):
                after, chain = await self.store.witness_chain(agent, step.chain_after)
                reply = replace(reply, chain_after=after, chain=chain)
            return reply

    async def _commit(self, agent: str, before: WitnessRecord | None, step: WitnessStep) -> None:
        await self.store.commit_witness(agent, step.record, step.learned)
        usage = await self.usage()
        self._usage = WitnessUsage(
            usage.agents + (before is None and step.record is not None),
            usage.bytes + sum(link_bytes(s) for s in step.learned),
        )

    async def status(self, message: Status) -> StatusReply:
        agent = message.agent
        async with self._lock(agent):
            witness = await self.store.witness(agent)
        view = self.core.status(witness, message)
        after, chain = (message.known, ())
        chosen = view.chosen
        if view.chosen > message.known:
            after, chain = await self.store.witness_chain(agent, message.known)
        machine = self.gate.peek(agent)
        holding = Holding.NONE
        epoch = 0
        migration = None
        if machine is not None:
            record = machine.record
            run = machine.run
            holding = holding_of(record.state, run.phase, run.certified, record.epoch)
            epoch = record.epoch
            if run.handoff is not None:
                migration = run.handoff[0]
            elif record.pending is not None:
                migration = record.pending.migration_id
            custody = await self.store.custody(agent) if record.state is not ABSENT else []
            if custody and custody[-1].epoch > max(chosen, message.known):
                chosen = custody[-1].epoch
                after, chain = chain_after(custody, message.known)
        return StatusReply(
            sender=self.core.me,
            agent=agent,
            chosen=chosen,
            chain_after=after,
            chain=chain,
            accepted_ballot=view.accepted_ballot,
            accepted_record=view.accepted_record,
            holding=holding,
            epoch=epoch,
            migration_id=migration,
        )
