import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testnet.nemesis import (
    FAULT_KINDS,
    NemesisError,
    NemesisStep,
    RandomMix,
    cut_pairs,
    generate_schedule,
    partition_groups,
    reachable,
)
from testnet.scenario import ScenarioError, list_scenarios, load_scenario, parse_scenario

N5 = ["n1", "n2", "n3", "n4", "n5"]


def test_halves_cut_every_pair_across_the_split():
    groups = partition_groups("halves", N5)
    assert groups == [frozenset({"n1", "n2"}), frozenset({"n3", "n4", "n5"})]
    assert len(cut_pairs(groups, N5)) == 6


def test_isolate_cuts_only_the_named_node():
    assert cut_pairs(partition_groups("isolate:n3", N5), N5) == {
        ("n1", "n3"),
        ("n2", "n3"),
        ("n3", "n4"),
        ("n3", "n5"),
    }


def test_bridge_node_alone_sees_both_halves():
    view = reachable(partition_groups("bridge", N5), N5)
    assert view["n3"] == frozenset(N5)
    assert view["n1"] == {"n1", "n2", "n3"} and view["n5"] == {"n3", "n4", "n5"}


def test_ring_each_node_sees_only_its_neighbours():
    view = reachable(partition_groups("ring", N5), N5)
    assert view["n1"] == {"n5", "n1", "n2"} and view["n3"] == {"n2", "n3", "n4"}


@pytest.mark.parametrize("n", [4, 5, 6, 7, 9])
def test_majority_ring_each_node_sees_a_distinct_majority(n):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    view = reachable(partition_groups("majority-ring", nodes), nodes)
    assert all(len(v) > n // 2 for v in view.values())
    assert len(set(view.values())) == n


def test_explicit_groups_and_bad_shapes():
    assert partition_groups("", N5, groups="n1,n2/n3,n4") == [
        frozenset({"n1", "n2"}),
        frozenset({"n3", "n4"}),
        frozenset({"n5"}),
    ]
    for bad in ("triangle", "isolate:n9"):
        with pytest.raises(NemesisError):
            partition_groups(bad, N5)
    with pytest.raises(NemesisError):
        partition_groups("", N5, groups="n1,n2/n2,n3")


def test_malformed_steps_are_typed_errors():
    for action, args in [
        ("explode", {}),
        ("kill", {}),
        ("faults", {"drop": 2}),
        ("partition", {}),
        ("skew", {"node": "n1", "seconds": "x"}),
    ]:
        with pytest.raises(NemesisError):
            NemesisStep(1.0, action, args)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.floats(5, 30))
def test_same_seed_gives_the_same_schedule_ending_in_a_full_heal(seed, duration):
    mix = RandomMix(kinds=FAULT_KINDS, agents=("a1", "a2"))
    a = generate_schedule(seed, N5, duration, mix)
    assert a == generate_schedule(seed, N5, duration, mix)
    killed: set[str] = set()
    paused: set[str] = set()
    for s in a:
        node = s.args.get("node")
        if s.action == "kill":
            killed.add(node)
        elif s.action == "restart":
            killed.discard(node)
        elif s.action == "pause":
            paused.add(node)
        elif s.action == "unpause":
            paused.discard(node)
        assert len(killed | paused) <= 2  # never more than a minority down
    assert not killed and not paused
    final = [s.action for s in a if s.at_s == round(duration, 2)]
    assert final[:2] == ["heal", "clear_faults"]
    assert all(s.at_s <= round(duration, 2) for s in a)


def test_a_long_schedule_mixes_every_fault_kind():
    mix = RandomMix(kinds=FAULT_KINDS, agents=("a1",))
    actions = {s.action for s in generate_schedule(3, N5, 20, mix)}
    assert {"partition", "kill", "pause", "faults", "skew", "migrate"} <= actions
    assert generate_schedule(3, N5, 20, mix) != generate_schedule(4, N5, 20, mix)


def test_every_shipped_scenario_loads_and_lasts_10_to_20_seconds():
    names = list_scenarios()
    assert {
        "fs1-source-crash",
        "fs2-partition-after-send",
        "fs3-duplicate-migration",
        "fs4-stale-restart",
        "mc9-divergent-claims",
        "random",
        "partition-during-migration",
    } <= set(names)
    for name in names:
        s = load_scenario(name)
        assert s.name == name and 10 <= s.duration_s <= 20
        assert s.schedule() and all(0 <= st.at_s <= s.duration_s for st in s.schedule())


def test_demo_scenario_partitions_halves_during_wandering():
    s = load_scenario("partition-during-migration")
    assert (s.nodes, s.agents) == (5, 3) and s.wander_interval_s
    assert any(x.args.get("shape") == "halves" for x in s.schedule())
    assert s.schedule()[-1].action == "heal"


def test_random_scenario_schedule_is_reproducible():
    assert load_scenario("random").schedule() == load_scenario("random").schedule()


def test_bad_scenarios_are_scenario_errors(tmp_path):
    with pytest.raises(ScenarioError):
        load_scenario("no-such-scenario")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "name = 'x'\nduration_s = 10\n[[steps]]\nat_s = 1\naction = 'kill'\nnode = 'n9'\n"
    )
    with pytest.raises(ScenarioError):
        load_scenario(bad)
    bad.write_text("name = 'x'\nduration_s = [")
    with pytest.raises(ScenarioError):
        load_scenario(bad)
    base = {"name": "x", "duration_s": 10, "steps": [{"at_s": 1, "action": "heal"}]}
    for broken in (
        {**base, "typo": 1},
        {**base, "nodes": 0},
        {**base, "duration_s": "10"},
        {"name": "x", "duration_s": 10},
        {**base, "expect": {"verdict": "MAYBE"}},
    ):
        with pytest.raises(ScenarioError):
            parse_scenario(broken)
