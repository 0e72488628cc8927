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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from igor_p2p.agent.errors import OutOfFuel, SandboxError, TickInterrupted
from igor_p2p.agent.sandbox import TickResult
from igor_p2p.authority.events import BudgetExhausted, TickFailed
from igor_p2p.authority.states import AuthorityState
from igor_p2p.history import HistoryBatch, HistoryWriter
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind
from igor_p2p.logs import get_logger
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.metering import MAX_TICK_FUEL, charge, fuel_allowance
from igor_p2p.runtime.services import NodeServices

log = get_logger(__name__)


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


class TickSink(Protocol):
    """Where committed ticks go: the store's fenced append (one transaction per call)."""

    async def commit_ticks(
        self, commits: Sequence[tuple[str, int, Checkpoint]]
    ) -> list[BaseException | None]:
        """Append each (agent, epoch, checkpoint); per commit, None or why it was refused."""


@dataclass
class TickOutcome:
    """What happened to one agent in one batch (built in the worker thread)."""

    agent: HostedAgent
    start_ns: int
    end_ns: int
    result: TickResult | SandboxError
    cost: int = 0
    checkpoint: Checkpoint | None = None
    terminal: AuthorityState | None = None
    """BUDGET_EXHAUSTED or HALTED: the agent stops; ``checkpoint`` is its FINAL checkpoint."""
    reason: str = ""

    def report(self) -> BudgetExhausted | TickFailed:
        """The event the authority gate gets for a terminal outcome."""
        final = self.checkpoint.encode() if self.checkpoint is not None else None
        if self.terminal is AuthorityState.BUDGET_EXHAUSTED and final is not None:
            return BudgetExhausted(final)
        return TickFailed(self.reason, final)


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
        self._batch_done = trio.Event()
        self._batch_done.set()
        self._wake = trio.Event()
        self.idle = trio.Event()
        """Set whenever no agent is scheduled (all finished, exhausted, halted or removed)."""
        self.idle.set()
        self.ticks_total = 0
        self._stopped_agents: dict[str, HostedAgent] = {}
        """Agents that stopped on their own, kept until the gate removes them."""

    # ---------------------------------------------------------------- membership

    @property
    def agents(self) -> dict[str, HostedAgent]:
        return {did: slot.agent for did, slot in self._slots.items()}

    def add(self, agent: HostedAgent, *, tick_limit: int | None = None) -> None:
        """Schedule ``agent`` (which this node durably owns) to tick now."""
        if agent.did in self._slots:
            raise ValueError(f"{agent.did} is already scheduled")
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
        task_status.started()
        while True:
            now = trio.current_time()
            due = [
                s
                for s in self._slots.values()
                if not s.agent.paused and s.due <= now and s.agent.instance is not None
            ]
            if not due:
                self._wake = trio.Event()
                waiting = [s.due for s in self._slots.values() if not s.agent.paused]
                deadline = min(waiting) if waiting else math.inf
                with trio.move_on_at(deadline):
                    await self._wake.wait()
                continue
            due.sort(key=lambda s: s.due)
            await self._run_batch(due[: self.config.max_batch])

    async def _run_batch(self, slots: Sequence[_Slot]) -> None:
        items = [(s.agent, fuel_allowance(s.agent.budget, s.agent.price)) for s in slots]
        self._in_batch = {s.agent.did for s in slots}
        self._batch_done = trio.Event()
        try:
            outcomes = await trio.to_thread.run_sync(
                _tick_batch, items, self.services, self.config.checkpoint_every
            )
            await self._settle_batch(list(zip(slots, outcomes, strict=True)))
        finally:
            self._in_batch = set()
            self._batch_done.set()

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
        if not waiting:
            return
        for _slot, outcome in waiting:
            if isinstance(outcome.result, TickInterrupted) and outcome.terminal is None:
                await trio.to_thread.run_sync(outcome.agent.start_instance, self.services.sandbox)
        for slot, outcome in waiting:
            if outcome.terminal is not None:
                self._stopped(slot, outcome.report())
        commits = [
            (slot, o) for slot, o in waiting if o.checkpoint is not None and o.terminal is None
        ]
        if commits:
            errors = await self.sink.commit_ticks(
                [(o.agent.did, o.agent.epoch, o.checkpoint) for _slot, o in commits]  # type: ignore[misc]
            )
            for (slot, outcome), error in zip(commits, errors, strict=True):
                if error is None:
                    self._committed(slot, outcome, history)
                else:
                    self._stopped(slot, TickFailed(f"the store refused a commit: {error}", None))
            history.flush()
        for slot, outcome in waiting:
            if slot.agent.did in self._slots:
                await self._after_settle(slot, outcome)

    def _settle_inline(self, slot: _Slot, outcome: TickOutcome, history: HistoryBatch) -> bool:
        """Settle an outcome that needs no await; False (nothing done) for any other one."""
        if (
            outcome.checkpoint is not None
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
        [error] = await self.sink.commit_ticks([(agent.did, agent.epoch, outcome.checkpoint)])
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
        agent.committed(checkpoint)
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

        def snapshot_and_sign() -> Checkpoint:  # one thread hop; signing a big state is slow
            state = instance.snapshot()
            return agent.checkpoint(
                services.key, kind=kind, state=state, wall_ns=services.clock.wall_ns()
            )

        return await trio.to_thread.run_sync(snapshot_and_sign)

    def _finish(self, slot: _Slot) -> None:
        """Off the schedule; the instance is kept (paused) for a FINAL snapshot until
        :meth:`remove` closes it."""
        slot.agent.paused = True
        self._slots.pop(slot.agent.did, None)
        self._stopped_agents[slot.agent.did] = slot.agent
        if not self._slots:
            self.idle.set()


def _snapshot_outcome(agent: HostedAgent, services: NodeServices) -> TickOutcome:
    now = services.clock.mono_ns()
    outcome = TickOutcome(agent, now, now, TickResult(more_work=agent.more_work, fuel_used=0))
    assert agent.instance is not None
    try:
        state = agent.instance.snapshot()
    except SandboxError as exc:
        return _halted(agent, services, outcome, f"snapshot failed: {exc}")
    outcome.checkpoint = agent.checkpoint(
        services.key, kind=CheckpointKind.TICK, state=state, wall_ns=services.clock.wall_ns()
    )
    return outcome


def _final(
    agent: HostedAgent, services: NodeServices, outcome: TickOutcome, state: bytes
) -> TickOutcome:
    outcome.checkpoint = agent.checkpoint(
        services.key, kind=CheckpointKind.FINAL, state=state, wall_ns=services.clock.wall_ns()
    )
    return outcome


def _halted(
    agent: HostedAgent, services: NodeServices, outcome: TickOutcome, reason: str
) -> TickOutcome:
    """The agent misbehaved: roll back to the committed head and stop it, HALTED, with reason."""
    agent.tick = agent.head.tick
    agent.budget = agent.head.budget
    outcome.terminal = AuthorityState.HALTED
    outcome.reason = reason
    return _final(agent, services, outcome, agent.head.state)


def _tick_batch(
    items: Sequence[tuple[HostedAgent, int]], services: NodeServices, checkpoint_every: int
) -> list[TickOutcome]:
    """Run in a worker thread: tick, charge and (when due) checkpoint each agent."""
    outcomes: list[TickOutcome] = []
    mono = services.clock.mono_ns
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
            result = instance.tick(fuel)
        except SandboxError as exc:
            result = exc
        end = mono()
        outcome = TickOutcome(agent, start, end, result)
        outcomes.append(outcome)
        if isinstance(result, TickResult):
            charged = charge(agent.budget, agent.price, result.fuel_used)
            outcome.cost = charged.cost
            agent.budget = charged.budget_after
            agent.env.budget = agent.budget
            agent.tick += 1
            agent.ticks_since_commit += 1
            agent.more_work = result.more_work
            exhausted = agent.budget == 0
            if exhausted or agent.ticks_since_commit >= checkpoint_every:
                try:
                    state = instance.snapshot()
                except SandboxError as exc:
                    _halted(agent, services, outcome, f"snapshot failed: {exc}")
                    continue
                if exhausted:
                    outcome.terminal = AuthorityState.BUDGET_EXHAUSTED
                    outcome.reason = "budget exhausted"
                    _final(agent, services, outcome, state)
                else:
                    outcome.checkpoint = agent.checkpoint(
                        services.key,
                        kind=CheckpointKind.TICK,
                        state=state,
                        wall_ns=services.clock.wall_ns(),
                    )
        elif isinstance(result, OutOfFuel) and fuel >= MAX_TICK_FUEL:
            # Not the budget: the tick hit the per-tick fuel cap. Charge what it burned and
            # halt it (rolled back to the committed head), like any runaway tick.
            spent = charge(agent.head.budget, agent.price, fuel)
            _halted(agent, services, outcome, f"tick exceeded the per-tick cap of {fuel} fuel")
            outcome.cost = spent.cost
            agent.budget = spent.budget_after
            _final(agent, services, outcome, agent.head.state)
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
            pass  # rebuilt from the committed head by the trio side
        else:
            _halted(agent, services, outcome, f"{type(result).__name__}: {result}")
    return outcomes
