"""The node core: the composition of gate, claimant, witness, handoff and their ports.

The same class runs in a real node (libp2p, SQLite, the wasmtime scheduler) and in the
simulator (in-memory everything). It owns no I/O of its own: every effect goes through a port.

Operator entry points (admin API, CLI, simulator events): :meth:`launched`, :meth:`migrate`,
:meth:`halt`, :meth:`resume`, :meth:`force_recover`, :meth:`describe`. Runner callbacks:
:meth:`report` (budget exhausted, a failing tick). Peers reach :meth:`handle` through the
transport.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.events import (
    BudgetExhausted,
    Event,
    ForceRecover,
    Halt,
    Imported,
    Launched,
    Resume,
    Superseded,
    TickFailed,
)
from igor_p2p.authority.record import ABSENT, ClaimPurpose
from igor_p2p.authority.table import IllegalTransition
from igor_p2p.authority.witness import WitnessCore
from igor_p2p.authority.witness_choice import choose_witnesses
from igor_p2p.core.backoff import Backoff
from igor_p2p.core.claims import Ballots, Claimant, ClaimContext
from igor_p2p.core.config import CoreConfig
from igor_p2p.core.full_witnesses import FullWitnesses
from igor_p2p.core.gate import Effects, Gate
from igor_p2p.core.handoff import HandoffSource, HandoffTarget, Messenger, MigrationOutcome
from igor_p2p.core.ports import AgentRunner, AuthorityStore, Env, Membership, Transport
from igor_p2p.core.witness_service import WitnessQuota, WitnessService, holding_of
from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.lineage.identity import Keypair
from igor_p2p.logs import get_logger
from igor_p2p.wire.codec import Message
from igor_p2p.wire.messages import (
    Abort,
    Accept,
    Commit,
    GetModule,
    Learn,
    Module,
    Offer,
    Prepare,
    Refused,
    RefusedCode,
    Status,
)

log = get_logger(__name__)

Publisher = Callable[[str, EpochStart | None, int], None]


def _no_publish(agent: str, start: EpochStart | None, epoch: int) -> None:
    return None


@dataclass
class CorePorts:
    store: AuthorityStore
    transport: Transport
    runner: AgentRunner
    env: Env
    membership: Membership
    publish: Publisher = field(default=_no_publish)


class NodeCore:
    """Authority, witnessing and handoff for one node."""

    def __init__(self, key: Keypair, ports: CorePorts, config: CoreConfig | None = None) -> None:
        self.key = key
        self.me = key.public_key
        self.ports = ports
        self.config = config or CoreConfig()
        self._claimant: Claimant | None = None
        self.messenger: Messenger | None = None
        effects = Effects(
            start_claim=lambda a, p, s, o: self._require_claimant().start(a, p, s, o),
            send_commit=lambda a, t, m, st: self._require_messenger().send_commit(a, t, m, st),
            send_abort=lambda a, t, m: self._require_messenger().send_abort(a, t, m),
            learn=lambda a, st: self._require_messenger().learn(a, st),
            publish=lambda a, st, e: ports.publish(a, st, e),
        )
        self.gate = Gate(
            me=self.me, store=ports.store, runner=ports.runner, env=ports.env, effects=effects
        )
        self.gate.unsafe_resume = self.config.test_unsafe_resume
        self.backoff = Backoff(self.config, ports.env)
        self.full_witnesses = FullWitnesses()
        """How this node's retries wait (discovery and the fault gate end the waits)."""
        ctx = ClaimContext(
            key=key,
            store=ports.store,
            transport=ports.transport,
            gate=self.gate,
            env=ports.env,
            config=self.config,
            membership=ports.membership,
            ballots=Ballots(self.me, ports.env.token(8)),
            backoff=self.backoff,
            full_witnesses=self.full_witnesses,
        )
        self._claimant = Claimant(ctx)
        self.messenger = Messenger(ctx)
        self.witness = WitnessService(
            WitnessCore(key),
            ports.store,
            self.gate,
            WitnessQuota(self.config.witness_max_agents, self.config.witness_max_bytes),
        )
        self.source = HandoffSource(ctx, ports.runner, self._claimant, self.messenger)
        self.target = HandoffTarget(ctx, ports.runner)
        ports.transport.serve(self.handle)
        self.ready = trio.Event()

    def _require_claimant(self) -> Claimant:
        assert self._claimant is not None
        return self._claimant

    def _require_messenger(self) -> Messenger:
        assert self.messenger is not None
        return self.messenger

    def network_changed(self) -> None:
        """A peer came back or a partition healed (the node's discovery and fault gate say so):
        claims, COMMITs, ABORTs, LEARNs and OFFERs waiting out a backoff retry at once."""
        self.backoff.network_changed()

    async def run(
        self,
        *,
        restart: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled: settle what the last run left (``restart``: every agent the
        store holds gets ``Restarted``), then keep claims going."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._require_claimant().run)
            await nursery.start(self._require_messenger().run)
            if restart:
                await self.gate.restart_all()
            self.ready.set()
            task_status.started()
            await trio.sleep_forever()

    # ---------------------------------------------------------------- requests

    async def handle(self, sender: bytes, message: Message) -> Message:
        """Answer one request from ``sender`` (its key, as authenticated by the transport)."""
        claimed = getattr(message, "sender", sender)
        if claimed != sender:
            return Refused(self.me, RefusedCode.MALFORMED, "the message names another sender")
        try:
            if isinstance(message, Prepare | Accept | Learn):
                return await self.witness.handle(message)
            if isinstance(message, Status):
                return await self.witness.status(message)
            if isinstance(message, Offer):
                return await self.target.on_offer(sender, message)
            if isinstance(message, Commit):
                return await self.target.on_commit(sender, message)
            if isinstance(message, Abort):
                return await self.target.on_abort(sender, message)
            if isinstance(message, GetModule):
                return Module(self.me, await self.ports.store.module(message.wasm_hash))
        except InvalidInput as exc:
            return Refused(self.me, RefusedCode.MALFORMED, str(exc)[:400])
        except IgorError as exc:
            log.info("request failed", peer=sender.hex()[:16], step=str(exc))
            return Refused(self.me, RefusedCode.INTERNAL, str(exc)[:400])
        return Refused(self.me, RefusedCode.UNSUPPORTED, f"{message.TYPE} is not a request")

    # ---------------------------------------------------------------- operator API

    def witnesses_for_launch(self) -> tuple[bytes, ...]:
        return choose_witnesses(
            previous=(),
            new_owner=self.me,
            candidates=self.ports.membership.up_nodes(),
            down=self.ports.membership.down_nodes(),
            rng=self.ports.env.rng,
            k=self.config.witnesses,
            avoid=self.full_witnesses.current(trio.current_time()),
        )

    async def launched(
        self, agent: str, genesis: bytes, witnesses: tuple[bytes, ...], wasm: bytes, manifest: bytes
    ) -> None:
        """A genesis this node made (signed by the new agent's key) becomes epoch 1 here."""
        await self.ports.store.put_module(wasm, manifest)
        await self.gate.feed(agent, Launched(witnesses, genesis))

    async def imported(
        self,
        agent: str,
        *,
        epoch: int,
        witnesses: tuple[bytes, ...],
        entries: tuple[bytes, ...],
        fresh: bool,
        wasm: bytes,
        manifest: bytes,
    ) -> None:
        await self.ports.store.put_module(wasm, manifest)
        await self.gate.feed(agent, Imported(epoch, witnesses, entries, fresh))

    async def migrate(self, agent: str, target: bytes) -> MigrationOutcome:
        return await self.source.migrate(agent, target)

    async def halt(self, agent: str, reason: str = "halted by an operator") -> None:
        await self.gate.feed(agent, Halt(reason))

    async def resume(self, agent: str) -> None:
        await self.gate.feed(agent, Resume())

    async def force_recover(self, agent: str, operator: str) -> None:
        await self.gate.feed(agent, ForceRecover(operator))

    async def superseded(self, agent: str, latest: EpochStart) -> None:
        """Verified custody of a later epoch (a claim's proof, a witness's answer)."""
        await self.gate.feed(agent, Superseded(latest))

    def report(self, agent: str, event: BudgetExhausted | TickFailed) -> None:
        """The runner ended an agent (called from the trio thread)."""
        nursery = self._require_messenger()._nursery
        if nursery is not None:
            nursery.start_soon(self._report, agent, event)

    async def _report(self, agent: str, event: Event) -> None:
        try:
            await self.gate.feed(agent, event)
        except IllegalTransition as exc:
            log.info("runner report not applicable", agent=agent, step=str(exc))
        except IgorError as exc:
            log.warning("runner report failed", agent=agent, step=str(exc))

    def describe(self, agent: str) -> dict[str, Any] | None:
        """What this node believes about ``agent`` right now (no lock, no I/O)."""
        machine = self.gate.peek(agent)
        if machine is None or machine.record.state is ABSENT:
            return None
        record, run = machine.record, machine.run
        return {
            "agent": agent,
            "state": str(record.state),
            "epoch": record.epoch,
            "holding": holding_of(record.state, run.phase, run.certified, record.epoch).value,
            "phase": run.phase.value,
            "ticking": machine.may_tick,
            "claiming": run.claim.value if run.claim else None,
            "waiting": run.waiting,
            "witnesses": [w.hex() for w in record.witnesses],
            "successor": None
            if record.successor is None
            else {"epoch": record.successor.epoch, "owner": record.successor.owner.hex()},
            "reason": record.detail or (record.reason.value if record.reason else ""),
        }

    def claim_purpose(self, agent: str) -> ClaimPurpose | None:
        machine = self.gate.peek(agent)
        return machine.run.claim if machine is not None else None
