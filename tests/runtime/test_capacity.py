"""The node-wide budget: launches and arrivals the node cannot hold are refused, in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.agent.source import load_agent_manifest, load_agent_source
from igor_p2p.runtime.capacity import (
    MIB,
    Demand,
    NodeBudget,
    NodeUsage,
    ResourceCheck,
    admit,
    admit_offer,
    may_store,
)
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.runner import SchedulerRunner
from igor_p2p.runtime.scheduler import TickScheduler
from igor_p2p.runtime.services import open_services
from igor_p2p.store.adapter import SqliteAuthorityStore
from igor_p2p.wire.messages import RejectCode

BUDGET = NodeBudget(
    max_agents=10,
    memory_bytes=256 * MIB,
    disk_bytes=1024 * MIB,
    min_free_disk_bytes=100 * MIB,
    agent_storage_bytes=64 * MIB,
)
IDLE = NodeUsage(agents=1, memory_reserved=64 * MIB, disk_used=10 * MIB, disk_free=10_000 * MIB)
SMALL = Demand(memory_bytes=64 * MIB, disk_bytes=MIB, lineage_bytes=MIB)


def test_an_agent_that_fits_is_admitted() -> None:
    assert admit(SMALL, IDLE, BUDGET).admitted


@pytest.mark.parametrize(
    ("usage", "demand", "words"),
    [
        (NodeUsage(10, 0, 0, 10**12), SMALL, "hosting 10 agents"),
        (NodeUsage(1, 200 * MIB, 0, 10**12), SMALL, "memory budget"),
        (IDLE, Demand(MIB, MIB, 65 * MIB), "per-agent storage cap"),
        (NodeUsage(1, 0, 1023 * MIB, 10**12), Demand(MIB, 2 * MIB, MIB), "disk budget"),
        (NodeUsage(1, 0, 0, 100 * MIB), SMALL, "disk nearly full"),
    ],
)
def test_what_the_node_cannot_hold_is_refused_with_the_reason(
    usage: NodeUsage, demand: Demand, words: str
) -> None:
    verdict = admit(demand, usage, BUDGET)
    assert not verdict.admitted and words in verdict.reason


def test_a_checkpoint_that_does_not_fit_the_disk_budget_is_refused() -> None:
    assert may_store(MIB, IDLE, BUDGET).admitted
    assert not may_store(2000 * MIB, IDLE, BUDGET).admitted


def test_an_offer_is_measured_by_its_memory_cap_and_its_lineage() -> None:
    check = ResourceCheck(usage=IDLE, budget=BUDGET, default_memory_cap=64 * MIB)
    manifest = parse_manifest(b"{}")
    small = 100 * 1024
    assert admit_offer(check, manifest, small).admitted
    assert "storage cap" in admit_offer(check, manifest, 65 * MIB).reason
    # What the node already holds of the agent counts toward its storage cap too.
    assert "storage cap" in admit_offer(check, manifest, 2 * MIB, held_bytes=63 * MIB).reason
    crowded = ResourceCheck(
        usage=NodeUsage(1, 250 * MIB, 0, 10**12), budget=BUDGET, default_memory_cap=64 * MIB
    )
    assert "memory" in admit_offer(crowded, manifest, small).reason
    frugal = parse_manifest(b'{"resource_limits": {"max_memory_bytes": 1048576}}')
    assert admit_offer(crowded, frugal, small).admitted


async def test_the_runner_refuses_an_offer_it_cannot_hold_as_no_capacity(tmp_path: Path) -> None:
    """The handoff target asks the runner (``admit_offer``): a module it cannot run is
    CAPABILITY_MISSING, an agent beyond the node's budget NO_CAPACITY, both in words."""
    wasm, manifest = load_agent_source("counter"), load_agent_manifest("counter").canonical_bytes
    crowded = ResourceCheck(
        usage=NodeUsage(10, 0, 0, 10**12), budget=BUDGET, default_memory_cap=64 * MIB
    )
    async with open_services(DataDir(tmp_path)) as services:
        runner = SchedulerRunner(
            services,
            SqliteAuthorityStore(services.store, services.committer),
            TickScheduler(services, services.tick_sink()),
        )
        assert await runner.admit_offer(wasm, manifest, 1024) is None

        async def crowded_node() -> ResourceCheck:
            return crowded

        runner.resources = crowded_node
        code, words = await runner.admit_offer(wasm, manifest, 1024) or (None, "")
        assert code is RejectCode.NO_CAPACITY and "hosting 10 agents" in words

        async def idle_node() -> ResourceCheck:
            return ResourceCheck(usage=IDLE, budget=BUDGET, default_memory_cap=64 * MIB)

        runner.resources = idle_node
        code, words = await runner.admit_offer(wasm, manifest, 65 * MIB) or (None, "")
        assert code is RejectCode.NO_CAPACITY and "storage cap" in words
        bad = load_agent_source("badimport"), load_agent_manifest("badimport").canonical_bytes
        code, words = await runner.admit_offer(*bad, 1024) or (None, "")
        assert code is RejectCode.CAPABILITY_MISSING and words
