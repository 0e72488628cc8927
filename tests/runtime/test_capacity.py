"""The node-wide budget: launches and arrivals the node cannot hold are refused, in words."""

from __future__ import annotations

import pytest

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.handoff.messages import Offer
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
    big_lineage = Offer("p", "a", 1, bytes(16), b"c", (b"x" * (65 * MIB),), bytes(32), b"{}")
    small = Offer("p", "a", 1, bytes(16), b"c", (b"x" * 100,), bytes(32), b"{}")
    assert admit_offer(check, manifest, small, b"wasm", []).admitted
    assert "storage cap" in admit_offer(check, manifest, big_lineage, b"wasm", []).reason
    crowded = ResourceCheck(
        usage=NodeUsage(1, 250 * MIB, 0, 10**12), budget=BUDGET, default_memory_cap=64 * MIB
    )
    assert "memory" in admit_offer(crowded, manifest, small, b"wasm", []).reason
    frugal = parse_manifest(b'{"resource_limits": {"max_memory_bytes": 1048576}}')
    assert admit_offer(crowded, frugal, small, b"wasm", []).admitted
