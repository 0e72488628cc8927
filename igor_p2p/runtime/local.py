"""Running one agent locally, without a network: ``igor agent run`` and ``igor agent resume``.

The process holds the data directory's lock, ticks the agent through the same scheduler a node
uses, and stops cleanly on SIGINT/SIGTERM: the current tick finishes and is committed, then it
exits. ``kill -9`` loses at most the ticks after the last committed checkpoint.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from igor_p2p.authority.states import AuthorityState
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.runtime.agent_logs import AgentLogLine
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.hosted import HostedAgent
from igor_p2p.runtime.scheduler import SchedulerConfig, SchedulerHooks, TickScheduler
from igor_p2p.runtime.services import NodeServices, RuntimeConfig, open_services


@dataclass(frozen=True)
class LocalRunOptions:
    data: DataDir
    runtime: RuntimeConfig
    scheduler: SchedulerConfig
    ticks: int | None = None
    """Stop after this many ticks (None: until the budget runs out or a signal arrives)."""


@dataclass
class LocalRunResult:
    did: str
    ticks: int = 0
    last_tick: int = 0
    budget: int = 0
    state: AuthorityState = AuthorityState.ACTIVE_OWNER
    reason: str = ""
    stopped_by_signal: bool = False


Reporter = Callable[[str, dict[str, object]], None]
"""Called with an event name and fields: ``started``, ``committed``, ``log`` (a line the agent
printed: ``log_emit`` or WASI stdout/stderr, as it happens), ``stopped``."""


async def run_local(
    options: LocalRunOptions,
    start: Callable[[NodeServices], Awaitable[HostedAgent]],
    report: Reporter,
) -> LocalRunResult:
    """Open the data directory, bring in one agent with ``start``, tick it, stop cleanly."""
    async with open_services(options.data, options.runtime) as services:
        lines = _LinePrinter(report, trio.lowlevel.current_trio_token())
        unsubscribe = services.agent_logs.subscribe(lines.on_line)
        try:
            agent = await start(services)
            result = await _run_started(options, services, agent, report, lines)
        finally:
            unsubscribe()
        if lines.failure is not None:
            raise lines.failure
        return result


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


async def _run_started(
    options: LocalRunOptions,
    services: NodeServices,
    agent: HostedAgent,
    report: Reporter,
    lines: _LinePrinter,
) -> LocalRunResult:
    result = LocalRunResult(did=agent.did, last_tick=agent.head.tick, budget=agent.budget)
    report(
        "started",
        {
            "agent": agent.did,
            "epoch": agent.epoch,
            "tick": agent.head.tick,
            "budget": agent.budget,
            "peer_id": services.peer_id,
        },
    )
    lines.release(agent.did)

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

    def on_terminal(a: HostedAgent, state: AuthorityState, reason: str) -> None:
        result.state = state
        result.reason = reason

    scheduler = TickScheduler(
        services,
        options.scheduler,
        SchedulerHooks(on_committed=on_committed, on_terminal=on_terminal),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        scheduler.add(agent, tick_limit=options.ticks)

        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    result.stopped_by_signal = True
                    await scheduler.drain()
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(stop_on_signal)
        await scheduler.idle.wait()
        nursery.cancel_scope.cancel()
    result.ticks = scheduler.ticks_total
    report(
        "stopped",
        {
            "agent": agent.did,
            "ticks": result.ticks,
            "tick": result.last_tick,
            "budget": result.budget,
            "state": result.state.value,
            "reason": result.reason,
        },
    )
    return result
