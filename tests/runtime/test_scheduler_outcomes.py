"""How the scheduler ends a tick that runs out of fuel: budget exhausted vs runaway tick."""

from pathlib import Path

import pytest
import trio

from igor_p2p.agent.sandbox import Sandbox
from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.authority.states import AuthorityState
from igor_p2p.runtime import metering, scheduler
from igor_p2p.runtime.clock import NodeClock
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.hosted import AgentEnvironment
from igor_p2p.runtime.loader import LaunchRequest, launch
from igor_p2p.runtime.scheduler import SchedulerConfig, SchedulerHooks, TickScheduler
from igor_p2p.runtime.services import open_services


async def _run_spin(tmp_path: Path, budget: int) -> tuple[AuthorityState, str, int]:
    request = LaunchRequest(
        wasm=load_agent_source("spin"),
        manifest=load_agent_manifest("spin").canonical_bytes,
        budget=budget,
    )
    ended: list[tuple[AuthorityState, str]] = []
    async with open_services(DataDir(tmp_path)) as services:
        agent = await launch(services, request)
        sched = TickScheduler(
            services,
            SchedulerConfig(idle_interval_s=0, busy_interval_s=0),
            SchedulerHooks(on_terminal=lambda a, s, r: ended.append((s, r))),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)
            sched.add(agent)
            with trio.fail_after(20):
                await sched.idle.wait()
            nursery.cancel_scope.cancel()
        record = services.store.authority(agent.did)
    assert record is not None
    state, reason = ended[0]
    assert record.state is state
    return state, reason, agent.head.budget


async def test_a_tick_the_budget_cannot_pay_for_exhausts_the_budget(tmp_path: Path) -> None:
    state, _, budget = await _run_spin(tmp_path, budget=5_000)
    assert state is AuthorityState.BUDGET_EXHAUSTED
    assert budget == 0


async def test_a_tick_over_the_fuel_cap_halts_and_keeps_the_rest_of_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metering, "MAX_TICK_FUEL", 20_000)
    monkeypatch.setattr(scheduler, "MAX_TICK_FUEL", 20_000)
    state, reason, budget = await _run_spin(tmp_path, budget=10**9)
    assert state is AuthorityState.HALTED
    assert "per-tick cap" in reason
    # It paid for the capped tick's fuel and for starting its instance, nothing more.
    burned = 20_000 + _start_fuel("spin")
    assert budget == 10**9 - metering.cost_of(burned, metering.DEFAULT_PRICE)


def _start_fuel(name: str) -> int:
    """Fuel an agent's instance burns starting (``_initialize`` + ``agent_init``)."""
    with Sandbox() as sandbox:
        compiled = sandbox.compile(load_agent_source(name))
        env = AgentEnvironment(did="", clock=NodeClock(), budget=0)
        instance = sandbox.instantiate(compiled, load_agent_manifest(name), env)
        try:
            return instance.take_system_fuel()
        finally:
            instance.close()
