"""Every resource an agent consumes is paid for: fuel of failing ticks, log bytes, stored
checkpoint bytes; and capped: per-tick and node-wide log output, per-agent storage."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from igor_p2p.agent.sandbox import SandboxConfig
from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.authority.states import AuthorityState
from igor_p2p.runtime import metering
from igor_p2p.runtime.capacity import NodeBudget
from igor_p2p.runtime.hosted import MAX_AGENT_LOG_BYTES_PER_TICK
from igor_p2p.runtime.scheduler import ENVELOPE_ALLOWANCE_BYTES
from igor_p2p.runtime.services import RuntimeConfig

from .metered import BURN_THEN_TRAP, LOG_FLOOD, LOG_MANIFEST, tick_to_end

BUDGET = 10**12


def _example(name: str) -> tuple[bytes, bytes]:
    return load_agent_source(name), load_agent_manifest(name).canonical_bytes


async def test_a_trapping_tick_pays_for_the_fuel_it_burned(tmp_path: Path) -> None:
    ended = await tick_to_end(tmp_path, BURN_THEN_TRAP, budget=BUDGET)
    assert ended.state is AuthorityState.HALTED
    assert "AgentTrapped" in ended.reason
    assert ended.ticks == 0  # the state is rolled back ...
    assert BUDGET - ended.budget >= metering.cost_of(
        100_000, metering.DEFAULT_PRICE
    )  # ... not the charge


async def test_a_tick_stopped_by_the_watchdog_pays_for_the_fuel_it_burned(
    tmp_path: Path,
) -> None:
    runtime = RuntimeConfig(sandbox=SandboxConfig(tick_timeout_s=0.3))
    spin = load_agent_source("spin")
    ended = await tick_to_end(tmp_path, spin, budget=BUDGET, runtime=runtime)
    assert ended.state is AuthorityState.HALTED
    assert "TickTimeout" in ended.reason
    # 0.3 s of a tight loop is millions of fuel; none of it is free.
    assert BUDGET - ended.budget > 1_000_000


async def test_log_bytes_are_charged_and_capped_per_tick(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="igor_p2p")
    quiet = await tick_to_end(tmp_path / "quiet", *_example("counter"), ticks=3)
    loud = await tick_to_end(tmp_path / "loud", LOG_FLOOD, manifest=LOG_MANIFEST, ticks=3)
    agent_lines = [r for r in caplog.records if r.getMessage().startswith("agent log: ")]
    written = sum(len(r.getMessage()) - len("agent log: ") for r in agent_lines)
    # 3 ticks of 800 KiB each reach the node log as at most 64 KiB per tick ...
    assert 0 < written <= 3 * MAX_AGENT_LOG_BYTES_PER_TICK
    # ... and what was written is paid for, on top of the fuel.
    assert (BUDGET - loud.budget) - (BUDGET - quiet.budget) >= metering.log_cost(written)
    assert any("dropped" in r.getMessage() for r in caplog.records)


async def test_stored_checkpoint_bytes_are_charged(tmp_path: Path) -> None:
    small = await tick_to_end(tmp_path / "a", *_example("counter"), ticks=4)
    big = await tick_to_end(tmp_path / "b", *_example("bigstate_64k"), ticks=4)
    per_checkpoint = metering.storage_cost(64 * 1024 + ENVELOPE_ALLOWANCE_BYTES)
    assert (BUDGET - big.budget) - (BUDGET - small.budget) >= 3 * per_checkpoint


async def test_an_agent_at_its_storage_cap_is_halted(tmp_path: Path) -> None:
    runtime = RuntimeConfig(resources=NodeBudget(agent_storage_bytes=300 * 1024))
    ended = await tick_to_end(tmp_path, *_example("bigstate_64k"), runtime=runtime, ticks=50)
    assert ended.state is AuthorityState.HALTED
    assert "storage cap" in ended.reason
    assert 2 <= ended.ticks < 6  # about 300 KiB / 64 KiB checkpoints, then the cap
