"""The reproduced failures of issue 9, as deterministic simulation schedules of real cores."""

from __future__ import annotations

from typing import Any

from igor_p2p.sim.run import run_schedule
from tests.sim import scenarios


def _events(out: Any, kind: str, **match: Any) -> list[dict[str, Any]]:
    assert out.world is not None
    return [
        e
        for e in out.world.events
        if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
    ]


def _restore_time(out: Any, node: str) -> int:
    return max(e["mono_ns"] for e in _events(out, "fault", fault="restore", node=node))


def _final_state(out: Any, node_index: int) -> str:
    assert out.world is not None
    node = out.world.nodes[node_index]
    agent = out.world.agents[0]
    return str(node.disk.state.records[agent].state)


def test_restored_pending_target_never_ticks_the_old_epoch() -> None:
    out = run_schedule(scenarios.restored_pending_target(), keep_world=True)
    assert out.ok, out.result.to_text()
    restored_at = _restore_time(out, "n2")
    late_ticks = [t for t in _events(out, "tick", node="n2") if t["start_ns"] > restored_at]
    assert late_ticks == [], "the restored target ticked again"
    assert _final_state(out, 1) == "RETIRED"
    assert _events(out, "tick", node="n3"), "the new owner keeps ticking"


def test_restored_owner_meets_the_truth_with_the_new_owner_offline() -> None:
    out = run_schedule(scenarios.restored_owner_while_new_owner_offline(), keep_world=True)
    assert out.ok, out.result.to_text()
    restored_at = _restore_time(out, "n1")
    assert [t for t in _events(out, "tick", node="n1") if t["start_ns"] > restored_at] == []
    assert _final_state(out, 0) == "RETIRED"
    # The owner of epoch 3 comes back after the heal and ticks on.
    heal = out.world.heal_ns if out.world else 0
    assert [t for t in _events(out, "tick", node="n3") if t["start_ns"] > heal]


def test_a_lying_target_aborts_the_handoff_and_the_source_ticks_on() -> None:
    out = run_schedule(scenarios.lying_target(), keep_world=True)
    assert out.ok, out.result.to_text()
    assert out.coverage["migrate:ABORTED"] >= 4
    assert out.coverage.get("migrate:TRANSFERRED", 0) == 0
    assert _final_state(out, 0) == "ACTIVE_OWNER"
    assert not _events(out, "authority", to_state="RECOVERY_REQUIRED")
    end = out.world.heal_ns if out.world else 0
    assert [t for t in _events(out, "tick", node="n1") if t["start_ns"] > end]


def test_forged_higher_epochs_never_halt_or_retire_an_agent() -> None:
    out = run_schedule(scenarios.forged_higher_epochs(), keep_world=True)
    assert out.ok, out.result.to_text()
    assert not _events(out, "authority", to_state="RECOVERY_REQUIRED")
    assert out.coverage["migrate:TRANSFERRED"] >= 3
    assert out.world is not None
    for agent in out.world.agents:
        owners = [
            n.name
            for n in out.world.nodes
            if str(n.disk.state.records.get(agent, None) and n.disk.state.records[agent].state)
            == "ACTIVE_OWNER"
        ]
        assert len(owners) == 1, (agent, owners)


def test_forged_gossip_claims_never_halt_or_retire_an_agent() -> None:
    out = run_schedule(scenarios.forged_gossip_claims(), keep_world=True)
    assert out.ok, out.result.to_text()
    assert not _events(out, "authority", to_state="RECOVERY_REQUIRED")
    assert out.world is not None
    for agent in out.world.agents:
        owners = [
            n.name
            for n in out.world.nodes
            if (record := n.disk.state.records.get(agent)) is not None
            and str(record.state) == "ACTIVE_OWNER"
        ]
        assert len(owners) == 1, (agent, owners)
    # Non-vacuity: the forger lied throughout, honest nodes heard the lies, dropped the
    # malformed and unproven ones, and asked the witnesses about the far epochs.
    assert out.coverage["lie:forge_claims"] >= 20
    assert out.coverage["claims:ignored"] >= 200
    assert out.coverage["claims:asked"] >= 5
    assert out.coverage["migrate:TRANSFERRED"] >= 5
    assert out.coverage["operator:resume"] >= 2


def test_a_restarted_source_that_completes_its_own_handoff_sends_the_target_its_commit() -> None:
    """CI, random testnet schedule 8: the source died after a quorum accepted its transfer; its
    resume claim on restart can only complete that transfer. It must tell the target at once
    (COMMIT), not leave it in HANDOFF_PENDING until its own settlement or a partition's end."""
    out = run_schedule(scenarios.source_restarts_after_its_handoff_was_accepted(), keep_world=True)
    assert out.ok, out.result.to_text()
    assert out.world is not None
    restart = max(e["mono_ns"] for e in _events(out, "fault", fault="restart", node="n1"))
    prepared = _events(out, "authority", node="n2", to_state="HANDOFF_PENDING")[0]["mono_ns"]
    [taken] = _events(out, "authority", node="n2", to_state="ACTIVE_OWNER")
    assert taken["reason"] == "CommitReceived", taken
    settle_ns = int(out.world.config.settle_after_s * 1e9)
    assert restart < taken["mono_ns"] < prepared + settle_ns, "the target waited to settle"
    assert _final_state(out, 0) == "RETIRED"
    assert [t for t in _events(out, "tick", node="n2") if t["start_ns"] >= taken["mono_ns"]]


def test_an_owner_cut_off_through_a_long_partition_ticks_soon_after_a_heal_node_by_node() -> None:
    """The owner's link opens first; its first retry meets the others still cut off. Its next
    retry must start from the shortest wait again, not the 12-25 s the partition had grown."""
    out = run_schedule(scenarios.owner_cut_off_through_a_long_partition(41), keep_world=True)
    opened = [e["node"] for e in _events(out, "fault", fault="open")]
    assert opened[-1] != "n1", opened  # the owner heard of the heal before all links opened
    assert out.ok, out.result.to_text()


def test_a_source_that_died_right_after_retiring_sends_the_commit_again_on_restart() -> None:
    """Its retirement is durable, its COMMIT never left: back up, it sends it again, and the
    target owns the agent without waiting for its own settlement."""
    out = run_schedule(scenarios.source_restarts_after_it_retired(), keep_world=True)
    assert out.ok, out.result.to_text()
    assert out.world is not None
    restart = max(e["mono_ns"] for e in _events(out, "fault", fault="restart", node="n1"))
    prepared = _events(out, "authority", node="n2", to_state="HANDOFF_PENDING")[0]["mono_ns"]
    [taken] = _events(out, "authority", node="n2", to_state="ACTIVE_OWNER")
    assert taken["reason"] == "CommitReceived", taken
    settle_ns = int(out.world.config.settle_after_s * 1e9)
    assert restart < taken["mono_ns"] < prepared + settle_ns, "the target waited to settle"
