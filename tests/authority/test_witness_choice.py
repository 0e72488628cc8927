"""Which nodes witness an agent's next epoch (igor_p2p.authority.witness_choice)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from igor_p2p.authority.witness_choice import DEFAULT_WITNESSES, choose_witnesses
from igor_p2p.lineage.cert import quorum_reachable

NODES = [bytes([i]) * 32 for i in range(1, 10)]
N1, N2, N3, N4, N5, N6, N7, N8, N9 = NODES


def _choose(previous: list[bytes], owner: bytes, candidates: list[bytes], **kw: object) -> tuple:
    return choose_witnesses(
        previous=previous, new_owner=owner, candidates=candidates, rng=random.Random(7), **kw
    )  # type: ignore[arg-type]


def test_a_lone_node_has_no_witnesses() -> None:
    assert _choose([], N1, []) == ()
    assert _choose([], N1, [N1]) == ()


def test_two_or_three_nodes_all_witness() -> None:
    assert _choose([], N1, [N2]) == (N1, N2)
    assert _choose([], N2, [N1, N3]) == (N1, N2, N3)
    assert _choose([], N1, [N2], proposer=N3) == (N1, N2, N3)


def test_four_or_more_nodes_pick_three_without_the_new_owner() -> None:
    chosen = _choose([], N1, [N2, N3, N4, N5])
    assert len(chosen) == DEFAULT_WITNESSES and N1 not in chosen
    assert list(chosen) == sorted(chosen)


def test_previous_members_are_kept_unless_known_down() -> None:
    chosen = _choose([N2, N3, N9], N1, [N2, N3, N4, N5, N6], down=[N9])
    assert {N2, N3} <= set(chosen) and N9 not in chosen and len(chosen) == 3


def test_nodes_that_refused_as_full_are_left_out_when_others_can_serve() -> None:
    for seed in range(20):
        chosen = choose_witnesses(
            previous=[],
            new_owner=N1,
            candidates=[N2, N3, N4, N5, N6],
            rng=random.Random(seed),
            avoid=[N2, N3],
        )
        assert set(chosen) == {N4, N5, N6}


def test_full_nodes_still_fill_a_set_nobody_else_can_and_stay_where_they_witness() -> None:
    chosen = _choose([], N1, [N2, N3, N4, N5], avoid=[N2, N3])
    assert {N4, N5} <= set(chosen) and len(chosen) == 3  # one full node: nobody else is left
    kept = _choose([N2, N3, N4], N1, [N2, N3, N4, N5, N6], avoid=[N2])
    assert kept == (N2, N3, N4)  # a full member serves the agents it witnesses already


def test_a_previous_member_not_heard_from_yet_is_kept() -> None:
    # A node that just restarted has not heard its peers: absence is not "down".
    chosen = _choose([N2, N3, N9], N1, [N2, N3, N4, N5, N6])
    assert chosen == (N2, N3, N9)


def test_the_proposer_is_avoided_when_others_can_fill_the_set() -> None:
    chosen = _choose([N2, N3, N4], N5, [N2, N3, N4, N6], proposer=N2)
    assert N2 not in chosen and N5 not in chosen and len(chosen) == 3


def test_the_proposer_fills_the_set_only_when_nobody_else_can() -> None:
    # Four nodes: N1 hands to N2; only N3 and N4 are other candidates.
    chosen = _choose([], N2, [N3, N4], proposer=N1)
    assert chosen == (N1, N3, N4)


def test_the_choice_is_a_function_of_the_seed() -> None:
    pool = [N2, N3, N4, N5, N6, N7, N8]
    a = choose_witnesses(previous=[], new_owner=N1, candidates=pool, rng=random.Random(3))
    b = choose_witnesses(previous=[], new_owner=N1, candidates=pool, rng=random.Random(3))
    assert a == b


@given(
    previous=st.sets(st.sampled_from(NODES), max_size=4),
    owner=st.sampled_from(NODES),
    candidates=st.sets(st.sampled_from(NODES), max_size=9),
    proposer=st.none() | st.sampled_from(NODES),
    down=st.sets(st.sampled_from(NODES), max_size=3),
    seed=st.integers(0, 1000),
)
@settings(max_examples=300, deadline=None)
def test_every_choice_is_a_small_sorted_set_every_likely_proposer_can_reach_a_quorum_of(
    previous: set[bytes],
    owner: bytes,
    candidates: set[bytes],
    proposer: bytes | None,
    down: set[bytes],
    seed: int,
) -> None:
    chosen = choose_witnesses(
        previous=previous,
        new_owner=owner,
        candidates=candidates,
        rng=random.Random(seed),
        proposer=proposer,
        down=down,
    )
    kept = previous - down
    pool = candidates | kept | {owner} | ({proposer} if proposer else set())
    assert not (set(chosen) & down - candidates - {owner, proposer})  # the down stay out
    assert list(chosen) == sorted(set(chosen))
    assert set(chosen) <= pool
    assert len(chosen) == (0 if len(pool) == 1 else min(len(pool), DEFAULT_WITNESSES))
    if len(pool) > DEFAULT_WITNESSES:
        assert owner not in chosen  # a restored owner never votes for itself
    # The next epoch's owner will claim (resume or hand off) through this set: it must be able
    # to reach a quorum without counting its own vote where that vote does not count.
    assert quorum_reachable(chosen, owner)
