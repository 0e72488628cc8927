"""The tick scheduler: runs due agents' ticks in batches off the trio thread, meters them,
checkpoints them and commits the checkpoints through the group committer.

Only agents this node holds as ACTIVE_OWNER are ever added. A handoff first calls
:meth:`TickScheduler.quiesce`, which returns once the agent is out of every batch and its last
tick is committed: from then on this node does not tick it (MC-8).

Per batch (one thread hop): for each due agent ``tick(fuel)`` with fuel = what its budget can
pay for, then the charge, then — every ``checkpoint_every`` ticks — a snapshot and a checkpoint
signed by this node. Back on the trio thread the batch's tick events are written (one flush),
then every checkpoint is submitted to the :class:`TickSink` in ONE call (the store merges them
into one transaction, fences each against the agent's durable record, and isolates a refused
one), then the commit events are written.

The scheduler never changes an agent's authority state: an agent that runs out of budget or
misbehaves is stopped here and *reported* (``SchedulerHooks.on_terminal`` with a
``BudgetExhausted`` or ``TickFailed`` event carrying its FINAL checkpoint); the authority gate
decides and persists.

Metering (prices in ``docs/agent-abi.md``): a tick pays for the fuel it burned, including the
fuel of the snapshot and of any (re)start of its instance, for the log bytes it wrote and for
the checkpoint bytes stored. A tick that fails by the agent's doing (trap, watchdog timeout, a
tick over the per-tick fuel cap, a bad snapshot) pays for what it burned too: charges are never
rolled back, only the state is. A stop the host caused (an interruption, a host fault, a full
disk) costs the agent nothing. An agent whose lineage would outgrow the per-agent storage cap
is halted.

Disk: before a checkpoint is built the node's disk budget is checked (:func:`may_store`); when
it is reached, or SQLite reports the disk full (:class:`StoreFull`, the transaction rolled back
and the store intact), the affected agents are rolled back to their committed head and the whole
scheduler *suspends*: no agent ticks, nothing is written, until a recheck every
:data:`DISK_RECHECK_S` finds room again. The node keeps serving everything else meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from igor_p2p.agent.errors import (
    GuestStopped,
    HostFault,
    OutOfFuel,
    SandboxError,
    TickInterrupted,
    TickTimeout,
)
from igor_p2p.agent.sandbox import TickResult
from igor_p2p.authority.events import BudgetExhausted, TickFailed
from igor_p2p.authority.states import AuthorityState
from igor_p2p.bounded import BoundedLRU
from igor_p2p.history import HistoryBatch, HistoryWriter
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind
from igor_p2p.lineage.inputs import TickInputs
from igor_p2p.logs import LogThrottle, get_logger
from igor_p2p.runtime.capacity import NodeBudget, NodeUsage, may_store, measure_disk
from igor_p2p.runtime.hosted import HostedAgent, NodeLogBudget
from igor_p2p.runtime.metering import (
    MAX_TICK_FUEL,
    charge_micro,
    cost_of,
    failed_tick_fuel,
    fuel_allowance,
    log_cost,
    storage_cost,
)
from igor_p2p.runtime.services import NodeServices
from igor_p2p.store.errors import StoreError, StoreFull

log = get_logger(__name__)

ENVELOPE_ALLOWANCE_BYTES = 512
"""A checkpoint is charged and counted as its state plus this much for the envelope's fields."""
DISK_RECHECK_S = 5.0
OFFERED_KEPT = 64
"""Agents whose last HANDOFF snapshot is kept for a retry (least recently made go first)."""
"""While suspended for a full disk, how often the scheduler looks for room again."""
RESUME_HEADROOM_BYTES = 16 * 1024 * 1024
"""Ticking resumes only when this much more than the reserve fits again."""


PIPELINE = 2
"""Batches in flight at once (one ticking while another commits)."""


@dataclass(frozen=True)
class SchedulerConfig:
    idle_interval_s: float = 1.0
    """Delay before the next tick when the agent reported no more work (Go Igor: 1 s)."""
    busy_interval_s: float = 0.01
    """Delay when the agent returned non-zero from ``agent_tick`` (Go Igor: 10 ms)."""
    checkpoint_every: int = 1
    """Commit a checkpoint every K ticks (1 = every tick)."""
    max_batch: int = 512
    """At most this many agents' ticks per thread hop."""


@dataclass
class TickOutcome:
    """What happened to one agent in one batch (built in the worker thread)."""

    agent: HostedAgent
    start_ns: int
    end_ns: int
    result: TickResult | SandboxError
    cost: int = 0
    checkpoint: Checkpoint | None = None
    inputs: TickInputs | None = None
    """The tick-input record ``checkpoint`` follows (committed with it), if any."""
    terminal: AuthorityState | None = None
    reason: str = ""
    stored_bytes: int = 0
    """What ``checkpoint`` adds to the agent's lineage (as charged)."""
    log_dropped: int = 0
    """Log bytes the caps dropped during the tick."""
    suspended: str = ""
    """Why this outcome could not be stored (the node's disk budget); the agent is rolled back
    to its committed head and the scheduler suspends."""
    final_charge: int | None = None
    """A FINAL ``checkpoint`` at the head's tick: what it was charged without a committed tick
    (:func:`_rolled_back_charge`)."""

    def report(self) -> BudgetExhausted | TickFailed:
        """The event the authority gate gets for a terminal outcome."""
        final = self.checkpoint.encode() if self.checkpoint is not None else None
        if self.terminal is AuthorityState.BUDGET_EXHAUSTED and final is not None:
            return BudgetExhausted(final)
        return TickFailed(self.reason, final)


class TickSink(Protocol):
    """Where committed ticks go: the store's fenced append (one transaction per call)."""

    async def commit_ticks(
        self, commits: Sequence[tuple[str, int, Checkpoint, TickInputs | None]]
    ) -> list[BaseException | None]:
        """Append each (agent, epoch, checkpoint, the tick inputs before it); per commit, None
        or why it was refused."""

    def take_compacted(self) -> list[str]:
        """Agents whose stored lineage retention shrank since the last call."""


@dataclass
class _Slot:
    agent: HostedAgent
    due: float
    tick_limit: int | None = None
    ticks_run: int = 0


@dataclass
class SchedulerHooks:
    """Callbacks the node wires in (all optional)."""

    on_committed: Callable[[HostedAgent, Checkpoint], None] | None = None
    on_terminal: Callable[[HostedAgent, BudgetExhausted | TickFailed], None] | None = None
    """An agent stopped on its own (budget, trap, timeout, a refused commit)."""


class TickScheduler:
    """Ticks every hosted agent on its schedule. Start :meth:`run` in a nursery."""

    def __init__(
        self,
        services: NodeServices,
        sink: TickSink,
        config: SchedulerConfig | None = None,
        hooks: SchedulerHooks | None = None,
    ) -> None:
        self.services = services
        self.sink = sink
        self.config = config or SchedulerConfig()
        self.hooks = hooks or SchedulerHooks()
        self._slots: dict[str, _Slot] = {}
        self._in_batch: set[str] = set()
        """Agents in a batch that is running (ticking or committing)."""
        self._batches = 0
        self._batch_done = trio.Event()
        """Set (and replaced) whenever a batch ends."""
        self._tick_lane = trio.CapacityLimiter(1)
        """One batch ticks at a time; another may be committing meanwhile."""
        self._wake = trio.Event()
        self.idle = trio.Event()
        """Set whenever no agent is scheduled (all finished, exhausted, halted or removed)."""
        self.idle.set()
        self.ticks_total = 0
        self.log_budget = NodeLogBudget()
        """The node-wide cap on agent log output, shared by every agent added."""
        self.suspended: str | None = None
        """Why ticking is suspended (the disk is full), or None while agents tick."""
        self._log_drops = LogThrottle(60.0)
        self._stopped_agents: dict[str, HostedAgent] = {}
        self._offered: BoundedLRU[str, Checkpoint] = BoundedLRU(OFFERED_KEPT)
        self.final_charges: BoundedLRU[bytes, int] = BoundedLRU(OFFERED_KEPT)
        """FINAL checkpoint digest → what it charged without a committed tick (read by the
        authority gate when it records the checkpoint's commit)."""
        """Agents that stopped on their own, kept (paused) until the gate removes them."""

    # ---------------------------------------------------------------- membership

    @property
    def agents(self) -> dict[str, HostedAgent]:
        return {did: slot.agent for did, slot in self._slots.items()}

    def add(self, agent: HostedAgent, *, tick_limit: int | None = None) -> None:
        """Schedule ``agent`` (which this node durably owns) to tick now."""
        if agent.did in self._slots:
            raise ValueError(f"{agent.did} is already scheduled")
        agent.env.node_log = self.log_budget
        self._slots[agent.did] = _Slot(agent, trio.current_time(), tick_limit)
        self.idle = trio.Event() if self.idle.is_set() else self.idle
        self._wake.set()

    async def quiesce(self, did: str) -> HostedAgent:
        """Stop ticking ``did`` at a tick boundary; returns once no batch holds it."""
        slot = self._slots.get(did)
        if slot is None:
            stopped = self._stopped_agents.get(did)
            if stopped is None:
                raise KeyError(did)
            return stopped
        slot.agent.paused = True
        while did in self._in_batch:
            await self._batch_done.wait()
        return slot.agent

    def unpause(self, did: str) -> None:
        """Let a quiesced agent tick again (a handoff aborted before its decision)."""
        slot = self._slots[did]
        slot.agent.paused = False
        slot.due = trio.current_time()
        self._wake.set()

    def remove(self, did: str) -> HostedAgent | None:
        """Forget an agent that is quiesced (or stopped on its own); closes nothing."""
        if did in self._in_batch:
            raise RuntimeError(f"{did} is in a running batch; quiesce it first")
        slot = self._slots.pop(did, None)
        stopped = self._stopped_agents.pop(did, None)
        if not self._slots:
            self.idle.set()
        return slot.agent if slot else stopped

    def held(self, did: str) -> HostedAgent | None:
        """The agent, scheduled or stopped (paused) but not yet removed."""
        slot = self._slots.get(did)
        return slot.agent if slot else self._stopped_agents.get(did)

    # ---------------------------------------------------------------- loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick due agents in batches, up to :data:`PIPELINE` batches at once: while one batch
        waits for its group commit, the next (other agents) ticks."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                if self.suspended is not None:
                    await self._wait_for_disk()
                    continue
                now = trio.current_time()
                busy = self._in_batch
                due = [
                    s
                    for s in self._slots.values()
                    if not s.agent.paused
                    and s.due <= now
                    and s.agent.instance is not None
                    and s.agent.did not in busy
                ]
                if not due or self._batches >= PIPELINE:
                    self._wake = trio.Event()
                    waiting = [
                        s.due
                        for s in self._slots.values()
                        if not s.agent.paused and s.agent.did not in busy
                    ]
                    full = self._batches >= PIPELINE
                    deadline = min(waiting) if waiting and not full else math.inf
                    with trio.move_on_at(deadline):
                        await self._wake.wait()
                    continue
                due.sort(key=lambda s: s.due)
                batch = due[: self.config.max_batch]
                self._in_batch = busy | {s.agent.did for s in batch}
                self._batches += 1
                nursery.start_soon(self._run_batch, batch)
                await trio.lowlevel.checkpoint()

    async def _run_batch(self, slots: Sequence[_Slot]) -> None:
        items = [(s.agent, fuel_allowance(s.agent.budget, s.agent.price)) for s in slots]
        try:
            await self._measure_storage([s.agent for s in slots])
            outcomes = await trio.to_thread.run_sync(
                _tick_batch,
                items,
                self.services,
                self.config.checkpoint_every,
                limiter=self._tick_lane,
            )
            await self._settle_batch(list(zip(slots, outcomes, strict=True)))
        finally:
            self._in_batch = self._in_batch - {s.agent.did for s in slots}
            self._batches -= 1
            done, self._batch_done = self._batch_done, trio.Event()
            done.set()
            self._wake.set()

    async def _settle_batch(self, settled: list[tuple[_Slot, TickOutcome]]) -> None:
        """Settle a batch's outcomes in batch order, with one history write
        before the commits and ONE committer submission for all checkpoints of the batch (each
        agent's ops stay a group of their own, so a refused group fails only its agent)."""
        history = self.services.history.batch()
        waiting: list[tuple[_Slot, TickOutcome]] = []
        for slot, outcome in settled:
            # Outcomes that need no await (a plain tick, no checkpoint) are settled inline.
            if self._settle_inline(slot, outcome, history):
                continue
            if isinstance(outcome.result, TickResult):
                self._record_tick(slot, outcome, outcome.result, history)
            waiting.append((slot, outcome))
        history.flush()  # every tick event is written before its checkpoint is submitted
        for _slot, outcome in settled:
            if outcome.log_dropped:
                self._note_log_drop(outcome)
        if not waiting:
            return
        for _slot, outcome in waiting:
            if outcome.suspended:
                self._suspend(outcome.suspended)
            if (
                isinstance(outcome.result, TickInterrupted) or outcome.suspended
            ) and outcome.terminal is None:
                await self._rebuild(outcome.agent)
        for slot, outcome in waiting:
            if outcome.terminal is not None:
                if outcome.checkpoint is not None and outcome.final_charge is not None:
                    self.final_charges[outcome.checkpoint.digest()] = outcome.final_charge
                self._stopped(slot, outcome.report())
        commits = [
            (slot, o) for slot, o in waiting if o.checkpoint is not None and o.terminal is None
        ]
        if commits:
            errors = await self.sink.commit_ticks(
                [(o.agent.did, o.agent.epoch, o.checkpoint, o.inputs) for _s, o in commits]  # type: ignore[misc]
            )
            refused: list[tuple[_Slot, BaseException]] = []
            full: list[tuple[_Slot, StoreFull]] = []
            for (slot, outcome), error in zip(commits, errors, strict=True):
                if error is None:
                    self._committed(slot, outcome, history)
                elif isinstance(error, StoreFull):
                    full.append((slot, error))
                elif isinstance(error, StoreError):
                    refused.append((slot, error))
                else:
                    raise error
            history.flush()
            self._remeasure(self.sink.take_compacted())
            for slot, error in full:
                # Nothing was written: roll the agent back to its committed head, pause all.
                self._suspend(f"the store reports the disk full: {error}")
                await self._rebuild(slot.agent)
            for slot, error in refused:
                self._stopped(slot, TickFailed(f"the store refused a commit: {error}", None))
        for slot, outcome in waiting:
            if slot.agent.did in self._slots:
                await self._after_settle(slot, outcome)

    def _settle_inline(self, slot: _Slot, outcome: TickOutcome, history: HistoryBatch) -> bool:
        """Settle an outcome that needs no await; False (nothing done) for any other one."""
        if (
            outcome.checkpoint is not None
            or outcome.suspended
            or not isinstance(outcome.result, TickResult)
            or (slot.tick_limit is not None and slot.ticks_run + 1 >= slot.tick_limit)
        ):
            return False
        self._record_tick(slot, outcome, outcome.result, history)
        agent = outcome.agent
        interval = self.config.busy_interval_s if agent.more_work else self.config.idle_interval_s
        slot.due = trio.current_time() + interval
        return True

    def _record_tick(
        self,
        slot: _Slot,
        outcome: TickOutcome,
        result: TickResult,
        history: HistoryWriter | HistoryBatch,
    ) -> None:
        agent = outcome.agent
        self.ticks_total += 1
        slot.ticks_run += 1
        history.emit(
            "tick",
            agent=agent.did,
            epoch=agent.epoch,
            tick=agent.tick,
            start_ns=outcome.start_ns,
            end_ns=outcome.end_ns,
            fuel=result.fuel_used,
            cost=outcome.cost,
        )

    async def _after_settle(self, slot: _Slot, outcome: TickOutcome) -> None:
        agent = outcome.agent
        interval = self.config.busy_interval_s if agent.more_work else self.config.idle_interval_s
        slot.due = trio.current_time() + interval
        if slot.tick_limit is not None and slot.ticks_run >= slot.tick_limit:
            if agent.ticks_since_commit:
                await self._commit_now(slot)
            self._finish(slot)

    async def _commit(self, slot: _Slot, outcome: TickOutcome) -> None:
        assert outcome.checkpoint is not None
        agent = outcome.agent
        [error] = await self.sink.commit_ticks(
            [(agent.did, agent.epoch, outcome.checkpoint, outcome.inputs)]
        )
        if isinstance(error, StoreFull):
            self._suspend(f"the store reports the disk full: {error}")
            await self._rebuild(agent)
            return
        if error is not None:
            self._stopped(slot, TickFailed(f"the store refused a commit: {error}", None))
            return
        self._committed(slot, outcome, self.services.history)

    def _committed(
        self, slot: _Slot, outcome: TickOutcome, history: HistoryWriter | HistoryBatch
    ) -> None:
        """The outcome's checkpoint is durable: adopt it, record it, run the hooks."""
        agent = outcome.agent
        checkpoint = outcome.checkpoint
        assert checkpoint is not None
        if outcome.inputs is not None:
            _emit_inputs(history, outcome.inputs, agent)
        agent.committed(checkpoint)
        if agent.stored_bytes is not None:
            agent.stored_bytes += outcome.stored_bytes
        history.emit(
            "commit",
            agent=agent.did,
            epoch=checkpoint.epoch,
            tick=checkpoint.tick,
            kind=checkpoint.kind.name,
            digest=checkpoint.digest(),
            prev=checkpoint.prev,
            budget=checkpoint.budget,
        )
        if self.hooks.on_committed is not None:
            self.hooks.on_committed(agent, checkpoint)

    def _stopped(self, slot: _Slot, event: BudgetExhausted | TickFailed) -> None:
        """The agent stopped on its own: take it off the schedule and report it."""
        agent = slot.agent
        log.info("agent stopped", agent=agent.did, epoch=agent.epoch, step=type(event).__name__)
        self._finish(slot)
        if self.hooks.on_terminal is not None:
            self.hooks.on_terminal(agent, event)

    async def _commit_now(self, slot: _Slot) -> None:
        """Commit the agent's current state (used when a local run reaches its tick limit)."""
        agent = slot.agent
        outcome = await trio.to_thread.run_sync(_snapshot_outcome, agent, self.services)
        if outcome.checkpoint is not None:
            await self._commit(slot, outcome)

    async def drain(self) -> None:
        """Stop every agent at a tick boundary and commit any uncommitted ticks (clean stop)."""
        for did in list(self._slots):
            slot = self._slots.get(did)
            if slot is None:
                continue
            await self.quiesce(did)
            if slot.agent.ticks_since_commit and slot.agent.instance is not None:
                await self._commit_now(slot)

    async def checkpoint_now(self, did: str, kind: CheckpointKind) -> Checkpoint:
        """Snapshot a quiesced agent and return a signed checkpoint (not yet committed)."""
        held = self.held(did)
        if held is None:
            raise KeyError(did)
        agent = held
        if did in self._in_batch or not agent.paused:
            raise RuntimeError("checkpoint_now needs a quiesced agent")
        instance = agent.instance
        if instance is None:
            raise RuntimeError("agent has no instance")
        services = self.services
        if agent.ticks_since_commit and agent.inputs.pending(agent.head.tick):
            await self._commit_observed(agent)
        if kind is CheckpointKind.HANDOFF and (again := self._offered_again(agent)) is not None:
            return again  # a retry: a stale OFFER still in flight names the same head

        def snapshot_and_sign() -> Checkpoint:  # one thread hop; signing a big state is slow
            state = instance.snapshot()
            return agent.checkpoint(
                services.key, kind=kind, state=state, wall_ns=services.clock.wall_ns()
            )

        checkpoint = await trio.to_thread.run_sync(snapshot_and_sign)
        if kind is CheckpointKind.HANDOFF:
            self._offered[did] = checkpoint
        return checkpoint

    def _offered_again(self, agent: HostedAgent) -> Checkpoint | None:
        """The HANDOFF last made for ``agent``, if nothing changed since (no tick, commit or
        charge; it may have been reloaded after an abort): a retry offers the same bytes, so an
        OFFER of the first attempt delivered late names the same head as the retry's."""
        o = self._offered.get(agent.did)
        head = agent.head
        if o is None or agent.ticks_since_commit:
            return None
        now = (agent.epoch, head.tick, agent.tip, agent.budget, head.state)
        return o if (o.epoch, o.tick, o.prev, o.budget, o.state) == now else None

    async def _commit_observed(self, agent: HostedAgent) -> None:
        """Commit the ticks since the head with what they observed (so they stay replayable)
        before a HANDOFF or FINAL snapshot; on failure the snapshot goes on without them."""
        outcome = await trio.to_thread.run_sync(_snapshot_outcome, agent, self.services)
        if outcome.checkpoint is None:
            return
        [error] = await self.sink.commit_ticks(
            [(agent.did, agent.epoch, outcome.checkpoint, outcome.inputs)]
        )
        if error is None:
            _emit_inputs(self.services.history, outcome.inputs, agent)
            agent.committed(outcome.checkpoint)
            self.services.history.emit(
                "commit",
                agent=agent.did,
                epoch=agent.epoch,
                tick=agent.tick,
                kind=CheckpointKind.TICK.name,
                digest=agent.tip,
                prev=outcome.checkpoint.prev,
                budget=outcome.checkpoint.budget,
            )

    # ---------------------------------------------------------------- metering support

    async def _measure_storage(self, agents: Sequence[HostedAgent]) -> None:
        """Learn the stored lineage size of agents new to the schedule (one store read)."""
        unknown = [a for a in agents if a.stored_bytes is None]
        if not unknown:
            return
        sizes = await self.services.committer.read(
            lambda store: [store.lineage_bytes(a.did) for a in unknown]
        )
        for agent, size in zip(unknown, sizes, strict=True):
            agent.stored_bytes = size

    def _remeasure(self, agents: Sequence[str]) -> None:
        """Retention dropped rows of these agents: measure their stored size again."""
        for did in agents:
            slot = self._slots.get(did)
            if slot is not None:
                slot.agent.stored_bytes = None

    async def _rebuild(self, agent: HostedAgent) -> None:
        """Roll an agent back to its committed head (the host stopped it: no charge)."""
        await trio.to_thread.run_sync(agent.start_instance, self.services.sandbox)
        if agent.instance is not None:
            agent.instance.take_system_fuel()  # a restart the host caused is not the agent's

    def _suspend(self, reason: str) -> None:
        if self.suspended is None:
            log.warning("ticking suspended: disk full", step=reason)
            self.services.history.emit("node", event="suspend", detail=reason)
        self.suspended = reason

    async def _wait_for_disk(self) -> None:
        """While suspended: recheck every DISK_RECHECK_S; resume once there is room again."""
        await trio.sleep(DISK_RECHECK_S)
        usage = await trio.to_thread.run_sync(node_disk_usage, self.services)
        if may_store(RESUME_HEADROOM_BYTES, usage, self.services.config.resources).admitted:
            log.info("ticking resumed: disk space is available again")
            self.services.history.emit("node", event="resume", detail="disk space available")
            self.suspended = None
            now = trio.current_time()
            for slot in self._slots.values():
                slot.due = min(slot.due, now)

    def _note_log_drop(self, outcome: TickOutcome) -> None:
        did = outcome.agent.did
        log_it, earlier = self._log_drops.admit(did)
        if log_it:
            log.warning(
                "agent log output over its caps dropped",
                agent=did,
                step=f"{outcome.log_dropped} bytes this tick"
                + (f", {earlier} earlier ticks also dropped output" if earlier else ""),
            )

    def _finish(self, slot: _Slot) -> None:
        """Off the schedule; the instance is kept (paused) for a FINAL snapshot until
        :meth:`remove` closes it."""
        slot.agent.paused = True
        self._slots.pop(slot.agent.did, None)
        self._stopped_agents[slot.agent.did] = slot.agent
        if not self._slots:
            self.idle.set()


def _rolled_back_charge(agent: HostedAgent, checkpoint: Checkpoint) -> int | None:
    """What a FINAL checkpoint at the committed head's tick charges without a committed tick:
    the failing tick's fuel (a budget that cannot pay for it, a trap, a timeout) and the ticks
    rolled back with it stay paid (docs/agent-abi.md), so the budget falls at the same tick.
    The history says how much (``commit`` ``charge``), so the checker's budget sum closes.
    None for every other checkpoint."""
    if checkpoint.kind is not CheckpointKind.FINAL or checkpoint.tick != agent.head.tick:
        return None
    return max(0, agent.head.budget - checkpoint.budget - agent.effect_charges)


def _emit_inputs(
    history: HistoryWriter | HistoryBatch, inputs: TickInputs | None, agent: HostedAgent
) -> None:
    """The ``commit`` event of a tick-input record (committed with its checkpoint)."""
    if inputs is not None:
        history.emit(
            "commit",
            agent=agent.did,
            epoch=inputs.epoch,
            tick=agent.head.tick,
            kind="INPUTS",
            digest=inputs.digest(),
            prev=inputs.prev,
            budget=agent.budget,
        )


def _take_inputs(agent: HostedAgent, services: NodeServices, outcome: TickOutcome) -> None:
    """The tick-input record of the ticks since the head (if they observed anything), paid for
    as stored bytes like a checkpoint, before the checkpoint that follows it is signed."""
    outcome.inputs = agent.take_inputs(services.key)
    if outcome.inputs is not None:
        size = len(outcome.inputs.log) + ENVELOPE_ALLOWANCE_BYTES
        _pay(agent, outcome, storage_cost(size))
        outcome.stored_bytes += size


def _snapshot_outcome(agent: HostedAgent, services: NodeServices) -> TickOutcome:
    now = services.clock.mono_ns()
    outcome = TickOutcome(agent, now, now, TickResult(more_work=agent.more_work, fuel_used=0))
    assert agent.instance is not None
    try:
        state = agent.instance.snapshot()
    except SandboxError as exc:
        return _halted(agent, services, outcome, f"snapshot failed: {exc}")
    _take_inputs(agent, services, outcome)
    outcome.checkpoint = agent.checkpoint(
        services.key,
        kind=CheckpointKind.TICK,
        state=state,
        wall_ns=services.clock.wall_ns(),
        inputs=outcome.inputs,
    )
    return outcome


def _final(
    agent: HostedAgent, services: NodeServices, outcome: TickOutcome, state: bytes
) -> TickOutcome:
    outcome.checkpoint = agent.checkpoint(
        services.key, kind=CheckpointKind.FINAL, state=state, wall_ns=services.clock.wall_ns()
    )
    outcome.final_charge = _rolled_back_charge(agent, outcome.checkpoint)
    return outcome


def _pay(agent: HostedAgent, outcome: TickOutcome, micro: int) -> None:
    """Charge ``micro`` µ to the agent (clamped at its budget) and add it to the tick's cost."""
    paid = charge_micro(agent.budget, micro)
    agent.budget = paid.budget_after
    outcome.cost += paid.cost


def _halted(
    agent: HostedAgent, services: NodeServices, outcome: TickOutcome, reason: str, burned: int = 0
) -> TickOutcome:
    """The agent misbehaved: stop it, HALTED, with reason, at its committed state.

    The state and tick go back to the committed head; the charges do not: the ticks run since
    the head stay paid, and so does the ``burned`` fuel of the failing call."""
    if agent.instance is not None:
        burned += agent.instance.take_system_fuel()
    _pay(agent, outcome, cost_of(burned, agent.price))
    agent.tick = agent.head.tick
    outcome.terminal = AuthorityState.HALTED
    outcome.reason = reason
    return _final(agent, services, outcome, agent.head.state)


def node_disk_usage(services: NodeServices) -> NodeUsage:
    """The node's disk use now (store, WAL, history) and the space left (blocking: a thread)."""
    data = services.data
    wal = data.database.with_name(data.database.name + "-wal")
    used, free = measure_disk([data.database, wal, data.history], data.root)
    return NodeUsage(agents=0, memory_reserved=0, disk_used=used, disk_free=free)


def _store_checkpoint(
    agent: HostedAgent,
    services: NodeServices,
    outcome: TickOutcome,
    state: bytes,
    disk: list[NodeUsage],
    *,
    final: bool,
) -> bool:
    """Check the caps for storing ``state`` and pay for it. False: the tick cannot be kept
    (the agent was halted at its storage cap, or the node's disk budget is reached)."""
    budget: NodeBudget = services.config.resources
    size = len(state) + ENVELOPE_ALLOWANCE_BYTES
    stored = agent.stored_bytes or 0
    if not final and stored + size > budget.agent_storage_bytes:
        _halted(
            agent,
            services,
            outcome,
            f"storage cap reached: the lineage would exceed {budget.agent_storage_bytes} bytes",
        )
        return False
    verdict = may_store(size, disk[0], budget)
    if not verdict.admitted:
        outcome.suspended = verdict.reason
        return False
    _pay(agent, outcome, storage_cost(size))
    outcome.stored_bytes = size
    usage = disk[0]
    disk[0] = NodeUsage(
        agents=usage.agents,
        memory_reserved=usage.memory_reserved,
        disk_used=usage.disk_used + size,
        disk_free=usage.disk_free - size,
    )
    return True


def _tick_batch(
    items: Sequence[tuple[HostedAgent, int]], services: NodeServices, checkpoint_every: int
) -> list[TickOutcome]:
    """Run in a worker thread: tick, charge and (when due) checkpoint each agent."""
    outcomes: list[TickOutcome] = []
    mono = services.clock.mono_ns
    disk = [node_disk_usage(services)]
    for agent, fuel in items:
        instance = agent.instance
        assert instance is not None
        if fuel <= 0:
            start = mono()
            outcome = TickOutcome(agent, start, start, OutOfFuel(0))
            outcome.terminal = AuthorityState.BUDGET_EXHAUSTED
            outcome.reason = "budget exhausted"
            agent.tick = agent.head.tick
            agent.budget = 0
            outcomes.append(_final(agent, services, outcome, agent.head.state))
            continue
        start = mono()
        result: TickResult | SandboxError
        try:
            result = agent.run_tick(fuel)
        except SandboxError as exc:
            result = exc
        end = mono()
        outcome = TickOutcome(agent, start, end, result)
        outcomes.append(outcome)
        if isinstance(result, TickResult):
            _pay(
                agent, outcome, cost_of(result.fuel_used + instance.take_system_fuel(), agent.price)
            )
            written, outcome.log_dropped = agent.env.take_log_usage()
            _pay(agent, outcome, log_cost(written))
            agent.tick += 1
            agent.ticks_since_commit += 1
            agent.more_work = result.more_work
            exhausted = agent.budget == 0
            due = agent.ticks_since_commit >= checkpoint_every or agent.effects_pending
            if exhausted or due:
                try:
                    state = instance.snapshot()
                except SandboxError as exc:
                    burned = getattr(exc, "fuel_used", 0)
                    _halted(agent, services, outcome, f"snapshot failed: {exc}", burned)
                    agent.env.budget = agent.budget
                    continue
                _pay(agent, outcome, cost_of(instance.take_system_fuel(), agent.price))
                if not _store_checkpoint(agent, services, outcome, state, disk, final=exhausted):
                    agent.env.budget = agent.budget
                    continue
                exhausted = agent.budget == 0
                if exhausted:
                    outcome.terminal = AuthorityState.BUDGET_EXHAUSTED
                    outcome.reason = "budget exhausted"
                    _final(agent, services, outcome, state)
                else:
                    _take_inputs(agent, services, outcome)
                    outcome.checkpoint = agent.checkpoint(
                        services.key,
                        kind=CheckpointKind.TICK,
                        state=state,
                        wall_ns=services.clock.wall_ns(),
                        inputs=outcome.inputs,
                    )
        elif isinstance(result, OutOfFuel) and fuel >= MAX_TICK_FUEL:
            # Not the budget: the tick hit the per-tick fuel cap. Charge what it burned and
            # halt it (rolled back to the committed head), like any runaway tick.
            _halted(
                agent, services, outcome, f"tick exceeded the per-tick cap of {fuel} fuel", fuel
            )
        elif isinstance(result, OutOfFuel):
            # The tick needed more fuel than the budget pays for: the budget is spent. The
            # instance is poisoned, so the final checkpoint carries the last committed state.
            outcome.cost = agent.budget
            agent.tick = agent.head.tick
            agent.budget = 0
            outcome.terminal = AuthorityState.BUDGET_EXHAUSTED
            outcome.reason = "budget exhausted"
            _final(agent, services, outcome, agent.head.state)
        elif isinstance(result, TickInterrupted):
            pass  # the host interrupted it: rebuilt from the committed head, free of charge
        else:
            # Trap, watchdog timeout, bad snapshot: the agent's doing, so the fuel it burned is
            # paid. A host fault is ours, and free.
            burned = 0
            if isinstance(result, GuestStopped) and not isinstance(result, HostFault):
                burned = failed_tick_fuel(
                    result.fuel_used,
                    result.elapsed_s,
                    timed_out=isinstance(result, TickTimeout),
                    allowance=fuel,
                )
            _halted(agent, services, outcome, f"{type(result).__name__}: {result}", burned)
        agent.env.budget = agent.budget
    return outcomes
