"""Running one agent locally, without a network: ``igor agent run`` and ``igor agent resume``.

The process holds the data directory's lock and runs the same node core a network node runs
(authority gate, claims, the tick scheduler) over a loopback transport: an agent launched here
names no witnesses (one node cannot protect against its own restored disk; ``status`` says so),
and every resume is still a claim of a new epoch, recorded in the lineage. SIGINT/SIGTERM stop
cleanly: the current tick finishes and is committed. ``kill -9`` loses at most the ticks after
the last committed checkpoint.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import trio

from igor_p2p.authority.events import BudgetExhausted, IntegrityFailure, TickFailed
from igor_p2p.authority.states import AuthorityState
from igor_p2p.core.node_core import CorePorts, NodeCore
from igor_p2p.core.ports import Handler, PeerUnreachable
from igor_p2p.errors import IgorError
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.logs import get_logger
from igor_p2p.runtime.agent_logs import AgentLogLine
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.env import NodeEnv
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.loader import (
    AgentNotFound,
    LaunchRequest,
    LineageRejected,
    NotOwner,
    prepare_launch,
)
from igor_p2p.runtime.runner import SchedulerRunner
from igor_p2p.runtime.scheduler import SchedulerConfig, SchedulerHooks, TickScheduler
from igor_p2p.runtime.services import NodeServices, RuntimeConfig, open_services
from igor_p2p.store.adapter import SqliteAuthorityStore
from igor_p2p.wire.codec import Message

log = get_logger(__name__)


@dataclass(frozen=True)
class LocalRunOptions:
    data: DataDir
    runtime: RuntimeConfig
    scheduler: SchedulerConfig
    ticks: int | None = None
    """Stop after this many ticks (None: until the budget runs out or a signal arrives)."""


@dataclass(frozen=True)
class LaunchHere:
    request: LaunchRequest


@dataclass(frozen=True)
class ResumeHere:
    did: str


@dataclass
class LocalRunResult:
    did: str
    ticks: int = 0
    last_tick: int = 0
    budget: int = 0
    epoch: int = 0
    state: AuthorityState = AuthorityState.ACTIVE_OWNER
    reason: str = ""
    stopped_by_signal: bool = False


Reporter = Callable[[str, dict[str, object]], None]
"""Called with an event name and fields: ``started``, ``committed``, ``log`` (a line the agent
printed: ``log_emit`` or WASI stdout/stderr, as it happens), ``stopped``."""


class _LinePrinter:
    """Hands the agent's log lines to the reporter on the trio thread, in order; lines printed
    before the ``started`` report (e.g. by ``agent_resume``) are held until it is out."""

    def __init__(self, report: Reporter, token: trio.lowlevel.TrioToken) -> None:
        self._report = report
        self._token = token
        self._held: list[AgentLogLine] | None = []
        self.agent: str | None = None
        self.failure: BaseException | None = None
        """What the reporter raised (e.g. a closed stdout); raised again when the run ends."""

    def on_line(self, line: AgentLogLine) -> None:  # any thread
        self._token.run_sync_soon(self._deliver, line)

    def _deliver(self, line: AgentLogLine) -> None:
        if self._held is not None:
            self._held.append(line)
        elif line.agent == self.agent and self.failure is None:
            try:
                self._report("log", line.to_json())
            except BaseException as exc:  # never let it escape into trio's callback runner
                self.failure = exc

    def release(self, agent: str) -> None:
        self.agent = agent
        held, self._held = self._held or [], None
        for line in held:
            self._deliver(line)


class LoopbackTransport:
    """A transport with no peers: requests to this node are answered here, others fail."""

    def __init__(self, me: bytes) -> None:
        self.me = me
        self._handler: Handler | None = None

    def serve(self, handler: Handler) -> None:
        self._handler = handler

    async def request(self, peer: bytes, message: Message, timeout: float) -> Message:
        if peer != self.me or self._handler is None:
            raise PeerUnreachable("a local run has no network")
        return await self._handler(self.me, message)


class Alone:
    def __init__(self, me: bytes) -> None:
        self.me = me

    def up_nodes(self) -> list[bytes]:
        return [self.me]

    def down_nodes(self) -> list[bytes]:
        return []


class AgentNotResumable(IgorError):
    """The agent cannot be resumed here (its state says why)."""


async def run_local(
    options: LocalRunOptions, what: LaunchHere | ResumeHere, report: Reporter
) -> LocalRunResult:
    """Open the data directory, bring in one agent, tick it, stop cleanly."""
    async with open_services(options.data, options.runtime) as services:
        lines = _LinePrinter(report, trio.lowlevel.current_trio_token())
        unsubscribe = services.agent_logs.subscribe(lines.on_line)
        try:
            result = await _run(options, services, what, report, lines)
        finally:
            unsubscribe()
        if lines.failure is not None:
            raise lines.failure
        return result


async def _run(
    options: LocalRunOptions,
    services: NodeServices,
    what: LaunchHere | ResumeHere,
    report: Reporter,
    lines: _LinePrinter,
) -> LocalRunResult:
    store = SqliteAuthorityStore(services.store, services.committer)
    hooks = SchedulerHooks()
    scheduler = TickScheduler(
        services,
        services.tick_sink(),
        options.scheduler,
        hooks,
    )
    runner = SchedulerRunner(services, store, scheduler)
    runner.tick_limit = options.ticks
    me = services.key.public_key
    core = NodeCore(
        services.key,
        CorePorts(
            store=store,
            transport=LoopbackTransport(me),
            runner=runner,
            env=NodeEnv(services.clock, services.history),
            membership=Alone(me),
        ),
    )
    started = trio.Event()
    settled = trio.Event()
    settled.set()
    hosted: list[HostedAgent] = []
    result = LocalRunResult(did="")

    def on_hosted(agent: HostedAgent) -> None:
        hosted.append(agent)
        started.set()

    runner.on_hosted = on_hosted

    def on_committed(a: HostedAgent, checkpoint: Checkpoint) -> None:
        result.last_tick = checkpoint.tick
        result.budget = checkpoint.budget
        report(
            "committed",
            {
                "agent": a.did,
                "epoch": checkpoint.epoch,
                "tick": checkpoint.tick,
                "kind": checkpoint.kind.name,
                "budget": checkpoint.budget,
                "digest": checkpoint.digest().hex(),
            },
        )

    async with trio.open_nursery() as nursery:

        def on_terminal(a: HostedAgent, event: BudgetExhausted | TickFailed) -> None:
            nonlocal settled
            settled = trio.Event()
            nursery.start_soon(_settle_terminal, core, store, a, event, settled, on_committed)

        hooks.on_committed = on_committed
        hooks.on_terminal = on_terminal
        await nursery.start(scheduler.run)
        await nursery.start(partial(core.run, restart=False))
        await _record_damage_found_at_open(services, core)
        did = await _bring_in(services, core, store, what)
        result.did = did
        with trio.move_on_after(60):
            await _until_ticking_or_parked(core, did, started)
        view = core.describe(did) or {}
        if not hosted:
            state = view.get("state", "unknown")
            why = view.get("waiting") or view.get("reason") or ""
            raise AgentNotResumable(f"{did} did not start ticking here ({state}) {why}".strip())
        agent = hosted[0]
        result.last_tick = agent.head.tick
        result.budget = agent.budget
        result.epoch = agent.epoch
        report(
            "started",
            {
                "agent": did,
                "epoch": agent.epoch,
                "tick": agent.head.tick,
                "budget": agent.budget,
                "peer_id": services.peer_id,
            },
        )
        lines.release(did)

        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    result.stopped_by_signal = True
                    await scheduler.drain()
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(stop_on_signal)
        await scheduler.idle.wait()
        await settled.wait()
        nursery.cancel_scope.cancel()
    final = await store.record(result.did)
    if final is not None and isinstance(final.state, AuthorityState):
        result.state = final.state
        result.reason = final.detail
    last = await store.last_checkpoint(result.did)
    if last is not None:  # the gate committed a FINAL checkpoint the scheduler never saw
        result.last_tick = last.tick
        result.budget = last.budget
    result.ticks = scheduler.ticks_total
    report(
        "stopped",
        {
            "agent": result.did,
            "ticks": result.ticks,
            "tick": result.last_tick,
            "budget": result.budget,
            "state": result.state.value,
            "reason": result.reason,
        },
    )
    return result


async def _settle_terminal(
    core: NodeCore,
    store: SqliteAuthorityStore,
    agent: HostedAgent,
    event: BudgetExhausted | TickFailed,
    done: trio.Event,
    on_committed: Callable[[HostedAgent, Checkpoint], None],
) -> None:
    """The gate decides on the scheduler's report and commits its FINAL checkpoint; that
    commit is reported like the scheduler's own."""
    try:
        await core.gate.feed(agent.did, event)
        last = await store.last_checkpoint(agent.did)
        if last is not None and event.final is not None and last.encode() == event.final:
            on_committed(agent, last)
    finally:
        done.set()


async def _record_damage_found_at_open(services: NodeServices, core: NodeCore) -> None:
    """As a node does at start: every agent the store's integrity check found damaged goes to
    RECOVERY_REQUIRED with the reason (the gate decides; a terminal state stays)."""
    for problem in services.store.problems_at_open:
        if problem.agent:
            why = f"integrity check at start: {problem.kind.value}: {problem.reason}"
            await _record_damage(core, problem.agent, why)


async def _record_damage(core: NodeCore, did: str, why: str) -> None:
    try:
        await core.gate.feed(did, IntegrityFailure(why))
    except IgorError as exc:
        log.warning("cannot record damage", agent=did, step=str(exc))


async def _verified_before_claim(
    services: NodeServices, core: NodeCore, store: SqliteAuthorityStore, did: str
) -> None:
    """A resume claims a new epoch, which appends to the lineage: only onto one that verifies
    (damage goes to RECOVERY_REQUIRED with the reason, and nothing is written)."""
    blobs = await store.lineage(did)
    report = await trio.to_thread.run_sync(
        lambda: verify_lineage(blobs, expected_agent=did, ordered=True)
    )
    if report.valid:
        return
    why = "; ".join(f"{p.code.value}: {p.message}" for p in report.problems[:3])
    await _record_damage(core, did, f"the stored lineage does not verify: {why}")
    raise LineageRejected(f"the stored lineage of {did} does not verify: {why}")


async def _bring_in(
    services: NodeServices,
    core: NodeCore,
    store: SqliteAuthorityStore,
    what: LaunchHere | ResumeHere,
) -> str:
    if isinstance(what, LaunchHere):
        launch = await prepare_launch(services, what.request, ())
        await core.launched(
            launch.did, launch.genesis.encode(), launch.witnesses, launch.wasm, launch.manifest
        )
        return launch.did
    record = await store.record(what.did)
    if record is None:
        raise AgentNotFound(f"no agent {what.did} in this data directory")
    damage = [p for p in services.store.problems_at_open if p.agent == what.did]
    if damage:  # recorded as RECOVERY_REQUIRED at start; say what is damaged
        why = "; ".join(f"{p.kind.value}: {p.reason}" for p in damage[:3])
        raise LineageRejected(f"the stored lineage of {what.did} is damaged: {why}")
    if record.state in (AuthorityState.ACTIVE_OWNER, AuthorityState.HALTED):
        await _verified_before_claim(services, core, store, what.did)
    if record.state is AuthorityState.ACTIVE_OWNER:
        from igor_p2p.authority.events import Restarted

        await core.gate.feed(what.did, Restarted())
    elif record.state is AuthorityState.HALTED:
        await core.resume(what.did)
    else:
        raise NotOwner(what.did, str(record.state), record.detail)
    return what.did


async def _until_ticking_or_parked(core: NodeCore, did: str, started: trio.Event) -> None:
    while not started.is_set():
        view = core.describe(did)
        parked = view is not None and view["state"] != AuthorityState.ACTIVE_OWNER.value
        if parked and not view["claiming"]:  # a halted agent being resumed claims first
            return
        with trio.move_on_after(0.05):
            await started.wait()
