"""How the scheduler ends a tick that runs out of fuel: budget exhausted vs runaway tick."""

from pathlib import Path

import pytest

from igor_p2p.agent.sandbox import Sandbox
from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.authority.states import AuthorityState
from igor_p2p.runtime import metering, scheduler
from igor_p2p.runtime.clock import NodeClock
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.hosted import AgentEnvironment
from testnet.checker import build_lineages, check_budget
from testnet.history import merge, read_history

from .metered import tick_to_end


async def _run_spin(tmp_path: Path, budget: int) -> tuple[AuthorityState, str, int]:
    """Tick ``spin`` until the scheduler stops it; the state the gate persisted for the report,
    its reason, and the budget of the FINAL checkpoint."""
    spin = load_agent_source("spin"), load_agent_manifest("spin").canonical_bytes
    ended = await tick_to_end(tmp_path, *spin, budget=budget, deadline_s=20)
    assert ended.state is not None
    return ended.state, ended.reason, ended.budget


async def test_a_tick_the_budget_cannot_pay_for_exhausts_the_budget(tmp_path: Path) -> None:
    state, _, budget = await _run_spin(tmp_path, budget=5_000)
    assert state is AuthorityState.BUDGET_EXHAUSTED
    assert budget == 0


async def test_the_history_of_an_exhausting_tick_closes_the_budget_sum(tmp_path: Path) -> None:
    # Testnet soak seed 1040: the failing tick burns what is left; its FINAL checkpoint stays
    # at the committed tick, so the history must say what it charged for the checker to agree.
    await _run_spin(tmp_path, budget=5_000)
    history = merge([read_history(DataDir(tmp_path).history, node="n1")])
    final = [c for c in history.commits if c.kind == "FINAL"]
    assert len(final) == 1 and final[0].charge is not None and final[0].charge > 0
    lineages = build_lineages(history, None)
    outcome = check_budget(history, lineages)
    assert outcome.checked > 0 and outcome.violations == [], outcome.violations


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
