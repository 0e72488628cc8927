import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from testnet_events import auth, commit, dg, fault, tick

from testnet.checker import (
    AgentStore,
    BudgetViolation,
    CheckConfig,
    EpochOwnerViolation,
    EpochRegressionViolation,
    ForkViolation,
    GapViolation,
    LivenessViolation,
    LostCommitViolation,
    OverlapViolation,
    StoreSnapshot,
    UnexpectedErrorViolation,
    bench_checker,
    check,
)
from testnet.history import GENESIS_PREV, Histories, merge
from testnet.synthetic import SyntheticSpec, synthesize

NO_LIVENESS = CheckConfig(check_liveness=False)


def run(*events, stores=None, config=NO_LIVENESS):
    return check(merge([list(events)]), stores=stores, config=config)


def only(result, cls):
    assert not result.ok
    found = [v for v in result.violations if isinstance(v, cls)]
    assert found and len(found) == len(result.violations), result.to_text()
    return found


# (a) overlap -------------------------------------------------------------------------------


def test_sequential_ticks_on_two_nodes_do_not_overlap():
    r = run(tick("n1", 0, 10, n=1), tick("n2", 10, 20, n=2, epoch=2))
    assert r.counts["overlap"].violations == 0 and r.counts["overlap"].checked == 2


def test_overlapping_ticks_on_two_nodes_are_a_violation_with_both_intervals():
    (v,) = only(run(tick("n1", 0, 10), tick("n2", 5, 15, epoch=2)), OverlapViolation)
    assert (v.first.node, v.first.start_ns, v.first.end_ns) == ("n1", 0, 10)
    assert (v.second.node, v.second.start_ns, v.second.end_ns) == ("n2", 5, 15)
    assert v.overlap_ns == 5 and "n1" in v.summary() and "n2" in v.summary()


def test_overlap_hidden_behind_a_long_window_of_another_node_is_found():
    # n1's two ticks make one window [0, 500] that n2's window [200, 1000] starts inside
    r = run(
        tick("n1", 0, 100, n=1),
        tick("n2", 200, 300, n=1, epoch=2),
        tick("n2", 900, 1000, n=2, epoch=2),
        tick("n1", 400, 500, n=2),
    )
    pairs = {(v.first.node, v.second.node) for v in r.by_check("overlap")}
    assert pairs == {("n1", "n2")}
    (v,) = r.by_check("overlap")
    assert (v.first.start_ns, v.first.end_ns, v.first.ticks) == (0, 500, 2)
    assert (v.second.start_ns, v.second.end_ns, v.second.ticks) == (200, 1000, 2)


def test_owners_taking_turns_interleave_their_windows_though_no_ticks_overlap():
    # issue 9 case 4: two owners alternate; each tick is alone, both hold the agent
    events = []
    for i in range(5):
        events.append(tick("n1", 100 * i, 100 * i + 40, n=i + 1, epoch=2))
        events.append(tick("n2", 100 * i + 50, 100 * i + 90, n=i + 1, epoch=3))
    (v,) = only(run(*events), OverlapViolation)
    assert {v.first.node, v.second.node} == {"n1", "n2"}
    assert (v.first.ticks, v.second.ticks) == (5, 5)
    assert "held epoch" in v.summary()


def test_a_node_that_holds_the_agent_again_later_opens_a_new_window():
    r = run(
        tick("n1", 0, 10, n=1, epoch=1),
        tick("n2", 20, 30, n=2, epoch=2),
        tick("n1", 40, 50, n=3, epoch=3),
    )
    assert r.counts["overlap"].violations == 0 and r.counts["overlap"].checked == 3


def test_a_restored_node_ticking_its_old_epoch_again_spans_the_new_owners_window():
    # issue 9 case 2 shape: n1 owned epoch 1, the agent moved on, n1 came back from a backup
    r = run(
        tick("n1", 0, 10, n=1, epoch=1),
        tick("n2", 20, 30, n=2, epoch=2),
        tick("n3", 40, 50, n=3, epoch=3),
        tick("n1", 60, 70, n=2, epoch=1),
    )
    found = r.by_check("overlap")
    assert {(v.first.node, v.second.node) for v in found} == {("n1", "n2"), ("n1", "n3")}


# (g) robustness ----------------------------------------------------------------------------


def test_an_agent_halted_by_an_unexpected_error_is_a_robustness_violation():
    events = (
        auth("n1", 1, "ACTIVE_OWNER"),
        auth("n2", 2, "RECOVERY_REQUIRED", reason="restored", recovery="RESTORED_COPY"),
        auth(
            "n1", 3, "RECOVERY_REQUIRED", reason="unexpected KeyError", recovery="UNEXPECTED_ERROR"
        ),
    )
    (v,) = only(run(*events), UnexpectedErrorViolation)
    assert (v.node, v.mono_ns) == ("n1", 3) and "KeyError" in v.summary()
    assert run(*events[:2]).ok


# (b) lineage -------------------------------------------------------------------------------


def chain():
    return [
        commit("n1", 1, dg(1), kind="GENESIS", budget=100),
        tick("n1", 2, 3, n=1, cost=10),
        commit("n1", 4, dg(2), dg(1), n=1, budget=90),
        commit("n1", 5, dg(3), dg(2), n=1, kind="HANDOFF", budget=90),
        tick("n2", 6, 7, n=2, epoch=2, cost=5),
        commit("n2", 8, dg(4), dg(3), n=2, epoch=2, budget=85),
    ]


def test_linear_chain_across_a_handoff_passes_every_check():
    r = run(*chain())
    assert r.ok, r.to_text()
    assert r.counts["lineage"].checked == 4 and r.counts["budget"].checked == 3


def test_two_entries_with_one_prev_are_a_fork_naming_both_digests_and_nodes():
    r = run(*chain(), commit("n3", 9, dg(9), dg(3), n=2, epoch=2, budget=85))
    forks = [v for v in r.violations if isinstance(v, ForkViolation)]
    assert len(forks) == 1
    assert forks[0].prev == dg(3)
    assert {c.digest for c in forks[0].children} == {dg(4), dg(9)}
    assert set(forks[0].nodes()) == {"n2", "n3"}


def test_transfer_record_beside_the_next_checkpoint_is_not_a_fork():
    r = run(*chain(), commit("n1", 6, dg(7), dg(3), n=1, kind="TRANSFER", budget=90))
    assert r.ok, r.to_text()


def test_entry_whose_prev_was_never_committed_is_a_gap():
    (v,) = only(
        run(commit("n1", 1, dg(1), kind="GENESIS"), commit("n1", 5, dg(3), dg(2), budget=1000)),
        GapViolation,
    )
    assert v.missing_prev == dg(2) and v.entry.digest == dg(3) and v.nodes() == ("n1",)


def _epoch_two_after_a_transfer():
    return [
        commit("n1", 1, dg(1), kind="GENESIS", budget=100),
        commit("n1", 2, dg(2), dg(1), n=1, kind="HANDOFF", budget=100),
        commit("n1", 3, dg(3), dg(2), n=1, epoch=2, kind="TRANSFER", budget=0),
        commit("n1", 4, dg(4), dg(3), n=1, epoch=2, kind="CERT", budget=0),
    ]


def test_a_dead_offer_made_right_after_a_certificate_is_not_a_fork():
    # n1 took epoch 2 and offered it twice before ticking: n3 still holds the first HANDOFF
    # (childless); the second one went on (a transfer record follows it).
    def held_by_n3(tick: int, budget: int) -> dict[str, StoreSnapshot]:
        entry = (dg(5), dg(4), 2, tick, "HANDOFF", budget)
        return {"n3": StoreSnapshot("n3", {"a1": AgentStore((entry,), "HANDOFF_PENDING")})}

    chosen = commit("n1", 6, dg(6), dg(4), n=1, epoch=2, kind="HANDOFF", budget=100)
    on = commit("n1", 6, dg(7), dg(6), n=1, epoch=3, kind="TRANSFER", budget=0)
    events = [*_epoch_two_after_a_transfer(), chosen, on]
    r = run(*events, stores=held_by_n3(1, 100))
    assert r.counts["lineage"].violations == 0, r.to_text()
    # Not a snapshot of its checkpoint parent (another tick or budget): a fork.
    r = run(*events, stores=held_by_n3(2, 90))
    assert any(isinstance(v, ForkViolation) for v in r.violations), r.to_text()


def test_a_custody_records_missing_checkpoint_is_a_gap_unless_a_backup_was_restored():
    events = [
        commit("n1", 1, dg(1), kind="GENESIS", budget=100),
        commit("n2", 3, dg(3), dg(2), n=1, epoch=2, kind="TRANSFER", budget=0),
        commit("n2", 4, dg(4), dg(3), n=1, epoch=2, kind="CERT", budget=0),
    ]
    only(run(*events), GapViolation)
    assert run(*events, fault("n1", 2, "restore", 16)).ok
    # A restore excuses only the checkpoint a custody record names, not a tick's parent.
    lost_tick = commit("n2", 5, dg(6), dg(5), n=2, epoch=2, budget=90)
    only(run(*events, fault("n1", 2, "restore", 16), lost_tick), GapViolation)


def test_store_entries_fill_a_gap_in_the_commit_events():
    stores = {"n1": StoreSnapshot("n1", {"a1": AgentStore(((dg(2), dg(1), 1, 0, "TICK", 1000),))})}
    r = run(commit("n1", 1, dg(1), kind="GENESIS"), commit("n2", 5, dg(3), dg(2)), stores=stores)
    assert r.counts["lineage"].violations == 0


# (c) epochs --------------------------------------------------------------------------------


def test_epoch_lower_than_its_parent_is_a_regression():
    events = chain()
    events[-2] = tick("n2", 6, 7, n=2, epoch=0, cost=5)
    events[-1] = commit("n2", 8, dg(4), dg(3), n=2, epoch=0, budget=85)
    r = run(*events)
    regs = [v for v in r.violations if isinstance(v, EpochRegressionViolation)]
    assert regs and regs[0].parent.digest == dg(3) and regs[0].child.epoch == 0


def test_two_nodes_ticking_one_epoch_is_a_double_owner():
    r = run(tick("n1", 0, 10, n=1), tick("n2", 20, 30, n=2))
    (v,) = only(r, EpochOwnerViolation)
    assert v.epoch == 1 and v.nodes() == ("n1", "n2")
    assert [s.node for s in v.highlight_spans()] == ["n1", "n2"]


def test_handoff_target_storing_the_source_checkpoint_is_not_a_second_owner():
    # n2 reports committing n1's HANDOFF checkpoint (a copy) after n1 authored it
    r = run(*chain(), commit("n2", 6, dg(3), dg(2), n=1, kind="HANDOFF", budget=90))
    assert r.ok, r.to_text()


# (d) budget --------------------------------------------------------------------------------


def test_budget_increase_along_the_lineage_is_a_violation():
    events = chain()
    events[-1] = commit("n2", 8, dg(4), dg(3), n=2, epoch=2, budget=95)
    (v,) = only(run(*events), BudgetViolation)
    assert v.reason == "increase" and (v.parent.budget, v.child.budget) == (90, 95)


def test_budget_drop_that_differs_from_tick_costs_is_a_mismatch():
    events = chain()
    events[-1] = commit("n2", 8, dg(4), dg(3), n=2, epoch=2, budget=80)  # tick cost was 5
    (v,) = only(run(*events), BudgetViolation)
    assert v.reason == "cost_mismatch" and v.tick_cost_sum == 5
    assert [t.tick for t in v.counted_ticks] == [2]


def test_a_final_checkpoint_at_the_heads_tick_closes_the_sum_with_its_charge():
    # Testnet soak seed 1040: a tick the remaining budget could not pay for burned it all; the
    # FINAL checkpoint keeps the committed state and tick, at budget 0.
    genesis = commit("n1", 1, dg(1), kind="GENESIS", budget=100)
    final = commit("n1", 5, dg(2), dg(1), kind="FINAL", budget=0)
    assert only(run(genesis, final), BudgetViolation)[0].reason == "cost_mismatch"
    paid = replace(final, charge=100)
    assert run(genesis, paid).ok
    wrong = replace(final, charge=60)
    assert only(run(genesis, wrong), BudgetViolation)[0].reason == "cost_mismatch"


def test_rolled_back_tick_does_not_count_and_its_replay_does():
    # n1 ticks #1 (cost 50), crashes before committing, replays #1 (cost 10) and commits
    r = run(
        commit("n1", 1, dg(1), kind="GENESIS", budget=100),
        tick("n1", 2, 3, n=1, cost=50),
        tick("n1", 5, 6, n=1, cost=10),
        commit("n1", 7, dg(2), dg(1), n=1, budget=90),
    )
    assert r.ok, r.to_text()


def test_committed_tick_without_a_tick_event_is_missing():
    r = run(
        commit("n1", 1, dg(1), kind="GENESIS", budget=100),
        tick("n1", 2, 3, n=1, cost=10),
        commit("n1", 7, dg(2), dg(1), n=2, budget=90),
    )
    (v,) = only(r, BudgetViolation)
    assert v.reason == "missing_ticks" and v.missing_ticks == (2,)


def test_a_stored_checkpoint_never_reported_is_not_judged_but_one_reported_is():
    # The node was read (or stopped) between committing tick 2 and writing its history lines.
    events = [
        commit("n1", 1, dg(1), kind="GENESIS", budget=100),
        tick("n1", 2, 3, n=1, cost=10),
        commit("n1", 4, dg(2), dg(1), n=1, budget=90),
    ]
    row = (dg(3), dg(2), 1, 2, "TICK", 80)
    stores = {"n1": StoreSnapshot("n1", {"a1": AgentStore((row,), "ACTIVE_OWNER")})}
    assert run(*events, stores=stores).ok
    # Reported (a commit event) but its tick event is missing: a violation.
    (v,) = only(run(*events, commit("n1", 6, dg(3), dg(2), n=2, budget=80)), BudgetViolation)
    assert v.reason == "missing_ticks"
    # A stored checkpoint that raises the budget is judged all the same.
    up = (dg(3), dg(2), 1, 2, "TICK", 95)
    stores = {"n1": StoreSnapshot("n1", {"a1": AgentStore((up,), "ACTIVE_OWNER")})}
    (v,) = only(run(*events, stores=stores), BudgetViolation)
    assert v.reason == "increase"


# (e) durability ----------------------------------------------------------------------------


def store(node, *digests_prev, state="ACTIVE_OWNER", reason=None, agent="a1"):
    rows = tuple((d, p, 1, 0, "TICK", 100) for d, p in digests_prev)
    return StoreSnapshot(node, {agent: AgentStore(rows, state, reason)})


def test_commit_kept_as_ancestor_of_a_stored_entry_is_not_lost():
    events = chain()
    stores = {"n1": store("n1", state="RETIRED"), "n2": store("n2", (dg(4), dg(3)))}
    r = run(*events, stores=stores)
    assert r.counts["durability"].violations == 0 and r.counts["durability"].checked == 4


def test_commit_in_no_store_and_no_ancestor_is_lost_naming_node_and_digest():
    events = [*chain(), commit("n2", 9, dg(5), dg(4), n=2, epoch=2, budget=85, kind="HANDOFF")]
    stores = {"n1": store("n1", state="RETIRED"), "n2": store("n2", (dg(4), dg(3)))}
    (v,) = only(run(*events, stores=stores), LostCommitViolation)
    assert (v.node, v.digest, v.committed_mono_ns) == ("n2", dg(5), 9)


def test_durability_is_skipped_without_stores():
    assert run(*chain()).counts["durability"].skipped


# (f) liveness ------------------------------------------------------------------------------

S = 1_000_000_000


def test_agent_ticking_after_heal_plus_bound_is_live():
    cfg = CheckConfig(liveness_bound_s=1)
    r = run(
        fault("n1", 0, "partition"),
        fault("n1", S, "heal"),
        auth("n1", 0, "ACTIVE_OWNER"),
        tick("n1", 2 * S + 1, 2 * S + 2),
        config=cfg,
    )
    assert r.counts["liveness"].violations == 0 and r.ok


def test_agent_silent_after_heal_is_a_liveness_violation_with_final_states():
    r = run(
        fault("n1", 0, "partition"),
        fault("n1", S, "heal"),
        auth("n1", 0, "ACTIVE_OWNER"),
        tick("n1", 10, 20),
        fault("n1", 3 * S, "drop"),
        fault("n1", 3 * S + 1, "clear_faults"),
        config=CheckConfig(liveness_bound_s=1, heal_ns=S),
    )
    (v,) = only(r, LivenessViolation)
    assert v.reason == "no_tick_after_bound" and v.deadline_ns == 2 * S
    assert [(s.node, s.state) for s in v.final_states] == [("n1", "ACTIVE_OWNER")]


def test_agent_parked_in_recovery_with_a_reason_is_live():
    r = run(
        fault("n1", 0, "partition"),
        fault("n1", S, "heal"),
        tick("n1", 10, 20),
        auth("n1", 30, "RECOVERY_REQUIRED", reason="ambiguous_handoff"),
        auth("n2", 40, "RETIRED"),
        config=CheckConfig(liveness_bound_s=1),
    )
    assert r.ok, r.to_text()


def test_recovery_without_a_reason_is_a_liveness_violation():
    r = run(
        fault("n1", 0, "partition"),
        fault("n1", S, "heal"),
        auth("n1", 30, "RECOVERY_REQUIRED"),
        config=CheckConfig(liveness_bound_s=1),
    )
    (v,) = only(r, LivenessViolation)
    assert v.reason == "recovery_without_reason"


def test_store_authority_state_overrides_the_history():
    stores = {"n1": store("n1", state="RECOVERY_REQUIRED", reason="divergent_claims")}
    r = run(
        fault("n1", 0, "partition"),
        fault("n1", S, "heal"),
        auth("n1", 0, "ACTIVE_OWNER"),
        stores=stores,
        config=CheckConfig(liveness_bound_s=1),
    )
    assert r.counts["liveness"].violations == 0


def test_two_final_active_owners_after_heal_are_a_liveness_violation():
    r = run(
        fault("n1", 0, "partition"),
        fault("n1", S, "heal"),
        auth("n1", 1, "ACTIVE_OWNER"),
        auth("n2", 2, "ACTIVE_OWNER"),
        tick("n1", 3 * S, 3 * S + 5),
        config=CheckConfig(liveness_bound_s=1),
    )
    v = r.by_check("liveness")[0]
    assert isinstance(v, LivenessViolation) and v.reason == "multiple_active_owners"


# result rendering and speed ----------------------------------------------------------------


def test_result_json_and_text_carry_verdict_counts_and_evidence():
    r = run(tick("n1", 0, 10), tick("n2", 5, 15, epoch=2))
    doc = json.loads(r.to_json())
    assert doc["verdict"] == "FAIL" and doc["counts"]["overlap"]["violations"] == 1
    v = next(v for v in doc["violations"] if v["type"] == "OverlapViolation")
    assert v["first"]["node"] == "n1" and v["second"]["start_ns"] == 5
    assert "FAIL" in r.to_text() and "overlap" in str(r)


def test_checker_passes_a_synthesised_correct_history_of_ten_thousand_events():
    # Its speed is a `make bench` row, not a timed test.
    stats = bench_checker(10_000)
    assert stats["ok"] and stats["events"] >= 9_000


# properties --------------------------------------------------------------------------------

schedules = st.builds(
    SyntheticSpec,
    nodes=st.sampled_from([("n1", "n2"), ("n1", "n2", "n3"), ("n1", "n2", "n3", "n4", "n5")]),
    agents=st.integers(1, 4),
    ticks_per_epoch=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    checkpoint_every=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)


def correct(spec: SyntheticSpec) -> Histories:
    return merge(synthesize(spec).values())


@settings(max_examples=60, deadline=None)
@given(schedules)
def test_histories_from_a_correct_single_owner_schedule_never_violate(spec):
    r = check(correct(spec), config=CheckConfig(liveness_bound_s=0))
    assert r.ok, r.to_text()


@settings(max_examples=60, deadline=None)
@given(schedules, st.data())
def test_an_injected_double_owner_always_violates_overlap(spec, data):
    per_node = synthesize(spec)
    ticks = [e for evs in per_node.values() for e in evs if e.__class__.__name__ == "TickEvent"]
    victim = data.draw(st.sampled_from(ticks))
    others = [n for n in spec.nodes if n != victim.node]
    intruder = data.draw(st.sampled_from(others))
    offset = data.draw(
        st.integers(-(victim.end_ns - victim.start_ns) + 1, victim.end_ns - victim.start_ns - 1)
    )
    per_node[intruder].append(
        tick(
            intruder,
            victim.start_ns + offset,
            victim.end_ns + offset,
            agent=victim.agent,
            epoch=victim.epoch,
            n=victim.tick,
        )
    )
    r = check(merge(per_node.values()), config=NO_LIVENESS)
    overlaps = r.by_check("overlap")
    assert overlaps
    assert any({v.first.node, v.second.node} == {victim.node, intruder} for v in overlaps)


def test_genesis_prev_constant_is_32_zero_bytes():
    assert GENESIS_PREV == "00" * 32
