"""The authority gate: the only way anything changes what a node believes about an agent.

``async with gate.agent(did) as port`` takes the agent's lock (one lock per agent, the only
lock policy: every authority event of an agent is handled under it, in arrival order), rebuilds
or reuses its :class:`~igor_p2p.authority.table.AuthorityMachine`, and ``await
port.handle(event)`` feeds the event to the table and interprets the actions it returns, in the
order the table declares them:

- ``PersistAuthority`` is awaited until the store says it is durable; nothing after it runs
  before that (write-ahead);
- ``StopTicking`` / ``StartTicking`` drive the :class:`~igor_p2p.core.ports.AgentRunner`;
- ``StartClaim``, ``SendCommit``, ``SendAbort``, ``Learn`` and ``PublishClaim`` are handed to
  :class:`Effects` (background work that feeds its results back through the gate);
- replies (``ReplyAck`` …) are returned to the caller, who answers the request with them.

An unexpected exception while interpreting halts that agent in RECOVERY_REQUIRED with the
traceback in the log; the node and its other agents carry on.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.events import (
    Action,
    AgentFailed,
    ClaimResolved,
    ClaimStale,
    EnterRecovery,
    Event,
    IntegrityFailure,
    Learn,
    LogRejected,
    PersistAuthority,
    PublishClaim,
    Restarted,
    SendAbort,
    SendCommit,
    StartClaim,
    StartTicking,
    StopTicking,
    Superseded,
)
from igor_p2p.authority.record import ABSENT, NO_RECORD, AuthorityRecord, ClaimPurpose, Phase
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import AuthorityMachine, IllegalTransition
from igor_p2p.core.ports import AgentRunner, AuthorityStore, Env
from igor_p2p.errors import IgorError
from igor_p2p.lineage.cert import WitnessCert
from igor_p2p.lineage.custody import ForcedRecovery, TransferRecord
from igor_p2p.lineage.entries import EffectRecord, TickInputs, decode_entry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind
from igor_p2p.logs import get_logger

log = get_logger(__name__)


def authored_entries(blobs: Sequence[bytes], me: bytes) -> list[dict[str, object]]:
    """History ``commit`` fields for the entries among ``blobs`` this node authored: signed
    (a checkpoint, a custody record), owned (a genesis it made), or certified for it (the
    certificate after its own record)."""
    out: list[dict[str, object]] = []
    mine_record = False
    tick = 0
    for blob in blobs:
        entry = decode_entry(blob)
        if isinstance(entry, Checkpoint):
            tick = entry.tick
            ours = entry.signer == me or (
                entry.kind in (CheckpointKind.GENESIS, CheckpointKind.IMPORT) and entry.owner == me
            )
            fields = {"epoch": entry.epoch, "tick": entry.tick, "kind": entry.kind.name}
            budget = entry.budget
            mine_record = False
        elif isinstance(entry, WitnessCert):
            ours, mine_record = mine_record, False
            fields = {"epoch": entry.slot, "tick": tick, "kind": "CERT"}
            budget = 0
        elif isinstance(entry, EffectRecord | TickInputs):  # an owner's effect or input record
            ours, mine_record = entry.signer == me, False
            kind = "EFFECT" if isinstance(entry, EffectRecord) else "INPUTS"
            fields = {"epoch": entry.epoch, "tick": tick, "kind": kind}
            budget = 0
        elif isinstance(entry, TransferRecord | ForcedRecovery):
            ours = mine_record = entry.signer == me
            kind = "TRANSFER" if isinstance(entry, TransferRecord) else "FORCED"
            fields = {"epoch": entry.to_epoch, "tick": tick, "kind": kind}
            budget = 0
        else:  # a terminal export record (igor_p2p/lineage/export.py)
            ours, mine_record = entry.signer == me, False
            fields = {"epoch": getattr(entry, "epoch", 0), "tick": tick, "kind": "EXPORT"}
            budget = 0
        if ours:
            out.append({**fields, "digest": entry.digest(), "prev": entry.prev, "budget": budget})
    return out


class AgentHalted(IgorError):
    """Handling an event hit an unexpected error; the agent is now RECOVERY_REQUIRED."""


@dataclass(frozen=True)
class Effects:
    """Background work the interpreter starts (narrow callables, wired by the composition root)."""

    start_claim: Callable[[str, ClaimPurpose, int, str], None]
    send_commit: Callable[[str, bytes, bytes, EpochStart], None]
    send_abort: Callable[[str, bytes, bytes], None]
    learn: Callable[[str, EpochStart], None]
    publish: Callable[[str, EpochStart | None, int], None]


class AgentPort:
    """One agent's machine, held under its lock."""

    def __init__(self, gate: Gate, agent: str, machine: AuthorityMachine) -> None:
        self._gate = gate
        self.agent = agent
        self.machine = machine

    @property
    def record(self) -> AuthorityRecord:
        return self.machine.record

    async def handle(self, event: Event) -> list[Action]:
        """Feed ``event``; run its actions in order; return them (replies included)."""
        return await self._gate._handle(self.agent, self.machine, event)


def _recovery(record: AuthorityRecord) -> str | None:
    """Why a record is RECOVERY_REQUIRED (its ``RecoveryReason`` value), else None."""
    if record.state is AuthorityState.RECOVERY_REQUIRED and record.reason is not None:
        return record.reason.value
    return None


class Gate:
    """Per-agent locks, machines and the action interpreter of one node."""

    def __init__(
        self,
        *,
        me: bytes,
        store: AuthorityStore,
        runner: AgentRunner,
        env: Env,
        effects: Effects,
    ) -> None:
        self.me = me
        self.store = store
        self.runner = runner
        self.env = env
        self.effects = effects
        self._locks: dict[str, trio.Lock] = {}
        self._machines: dict[str, AuthorityMachine] = {}
        self.unsafe_resume = False

    # ---------------------------------------------------------------- access

    def lock(self, agent: str) -> trio.Lock:
        lock = self._locks.get(agent)
        if lock is None:
            lock = self._locks[agent] = trio.Lock()
        return lock

    def busy(self, agent: str) -> bool:
        lock = self._locks.get(agent)
        return lock is not None and lock.locked()

    def peek(self, agent: str) -> AuthorityMachine | None:
        """The cached machine, read without the lock (for status answers only)."""
        return self._machines.get(agent)

    def agents(self) -> list[str]:
        return sorted(self._machines)

    @asynccontextmanager
    async def agent(self, agent: str) -> AsyncIterator[AgentPort]:
        lock = self.lock(agent)
        try:
            async with lock:
                machine = self._machines.get(agent)
                if machine is None:
                    record = await self.store.record(agent)
                    machine = AuthorityMachine(self.me, record or NO_RECORD)
                    if record is not None:
                        self._machines[agent] = machine
                yield AgentPort(self, agent, machine)
                if machine.record.state is not ABSENT:
                    self._machines[agent] = machine
        finally:
            # Locks of agents this node holds nothing of (a peer named them in a request) do
            # not outlive their last user: the lock table stays bounded by the agents held.
            if (
                agent not in self._machines
                and self._locks.get(agent) is lock
                and not lock.locked()
                and lock.statistics().tasks_waiting == 0
            ):
                del self._locks[agent]

    async def feed(self, agent: str, event: Event) -> list[Action]:
        async with self.agent(agent) as port:
            return await port.handle(event)

    # ---------------------------------------------------------------- interpreter

    async def _handle(self, agent: str, machine: AuthorityMachine, event: Event) -> list[Action]:
        if isinstance(event, ClaimStale | Superseded | ClaimResolved):
            machine.note_head(await self.store.head(agent))
        before = machine.record.state
        actions = machine.handle(event)  # IllegalTransition propagates, typed, untouched
        try:
            for action in actions:
                await self._run(agent, machine, before, event, action)
        except IgorError:
            raise
        except trio.Cancelled:
            raise
        except Exception as exc:  # a bug: halt this agent, never the node
            await self._fail_agent(agent, machine, exc)
            raise AgentHalted(f"{agent}: {type(exc).__name__}: {exc}") from exc
        return actions

    async def _run(
        self,
        agent: str,
        machine: AuthorityMachine,
        before: object,
        event: Event,
        action: Action,
    ) -> None:
        history = self.env.history
        if isinstance(action, PersistAuthority):
            append = action.append
            if action.final_checkpoint:
                final = await self.runner.final_checkpoint(agent)
                append = ((final,) if final else ()) + append
            added = await self.store.commit_authority(
                agent, action.record, append, discard_copy=action.discard_copy
            )
            for fields in authored_entries(added, self.me):
                if fields["kind"] == CheckpointKind.FINAL.name:
                    charge = self.runner.charged_without_tick(fields["digest"])  # type: ignore[arg-type]
                    if charge is not None:
                        fields["charge"] = charge
                history.emit("commit", agent=agent, **fields)
            if action.record.state is not AuthorityState.ACTIVE_OWNER:
                await self.runner.forget(agent)
            if action.record.state != before:
                history.emit(
                    "authority",
                    agent=agent,
                    epoch=action.record.epoch,
                    from_state=None if before is ABSENT else str(before),
                    to_state=str(action.record.state),
                    reason=action.record.detail or type(event).__name__,
                    recovery=_recovery(action.record),
                )
        elif isinstance(action, StopTicking):
            await self.runner.stop(agent)
        elif isinstance(action, StartTicking):
            try:
                await self.runner.start(agent, action.epoch)
            except IgorError as exc:
                # The copy this node holds cannot run (damaged, or custody does not end here).
                failure = IntegrityFailure(f"cannot start the agent: {exc}")
                for follow in machine.handle(failure):
                    await self._run(agent, machine, machine.record.state, failure, follow)
        elif isinstance(action, StartClaim):
            if self.unsafe_resume and action.purpose is ClaimPurpose.RESUME:
                # TEST ONLY (CoreConfig.test_unsafe_resume): tick the old epoch, no claim.
                machine.run.phase = Phase.TICKING
                machine.run.certified = machine.record.epoch
                machine.run.claim = None
                await self.runner.start(agent, machine.record.epoch)
                return
            machine.run.waiting = f"claiming epoch {action.slot}"
            self.effects.start_claim(agent, action.purpose, action.slot, action.operator)
        elif isinstance(action, SendCommit):
            self.effects.send_commit(agent, action.target, action.migration_id, action.start)
        elif isinstance(action, SendAbort):
            self.effects.send_abort(agent, action.target, action.migration_id)
        elif isinstance(action, Learn):
            self.effects.learn(agent, action.start)
        elif isinstance(action, PublishClaim):
            self.effects.publish(agent, action.start, action.epoch)
        elif isinstance(action, EnterRecovery):
            log.warning(
                "recovery required",
                agent=agent,
                epoch=machine.record.epoch,
                step=f"{action.reason.value}: {action.detail}",
            )
        elif isinstance(action, LogRejected):
            log.info("ignored", agent=agent, epoch=machine.record.epoch, step=action.detail)
        # Replies are returned to the caller, who sends them.

    async def _fail_agent(self, agent: str, machine: AuthorityMachine, exc: Exception) -> None:
        detail = f"unexpected {type(exc).__name__}: {exc}"
        log.error(
            "agent halted by an unexpected error",
            agent=agent,
            step=detail,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        if machine.record.state is ABSENT:
            return
        with trio.CancelScope(shield=True):
            try:
                actions = machine.handle(AgentFailed(detail))
                for action in actions:
                    await self._run(
                        agent, machine, machine.record.state, AgentFailed(detail), action
                    )
            except Exception:  # the store itself is failing: keep the node up regardless
                log.error("cannot record the failure", agent=agent, step=traceback.format_exc())

    # ---------------------------------------------------------------- restart

    async def restart_all(self) -> None:
        """Feed Restarted to every agent the store holds (claims start in the background)."""
        resends = 0
        for agent, record in await self.store.records():
            latest = None
            handed_on = (
                record.state is AuthorityState.RETIRED
                and record.successor is not None
                and record.successor.epoch == record.epoch + 1
            )
            if handed_on and resends < MAX_COMMIT_RESENDS:
                custody = await self.store.custody(agent)
                latest = custody[-1] if custody else None
                resends += 1
            try:
                await self.feed(agent, Restarted(latest))
            except IllegalTransition:
                continue
            except IgorError as exc:
                log.warning("cannot restart agent", agent=agent, step=str(exc))


Feeder = Callable[[str, Event], Awaitable[list[Action]]]

MAX_COMMIT_RESENDS = 1000
"""Retired agents a restarting node reads the custody of, to send a COMMIT a crash cut off
again (beyond that, their targets settle through the witnesses themselves)."""
