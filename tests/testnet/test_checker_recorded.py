"""Negative controls from a recorded real run (issue 9 case 2 with witness claims switched off).

``fixtures/restored-owner-unsafe``: four ``igor node run`` processes; the agent went n1 → n2 →
n3, n3 went offline, n2 restarted, and n1's store was restored from a backup of its first
epoch. With ``test_disable_fencing`` the restored n1 ticked its old epoch again. Recorded by the
schedule of ``tests/e2e/test_stale_copies.py`` (histories, store rows and the run's facts).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from testnet.checker import (
    AgentStore,
    CheckConfig,
    ForkViolation,
    OverlapViolation,
    StoreSnapshot,
    build_lineages,
    check,
    check_lineage,
    check_overlap,
)
from testnet.history import merge, parse_history_lines

RUN = Path(__file__).parent / "fixtures" / "restored-owner-unsafe"
FACTS = json.loads((RUN / "run.json").read_text())


def _histories():  # type: ignore[no-untyped-def]
    per_node = []
    for node in ("n1", "n2", "n3", "n4"):
        raw = gzip.decompress((RUN / node / "history.jsonl.gz").read_bytes())
        per_node.append(parse_history_lines(raw.splitlines(), file=node, node=node))
    return merge(per_node)


def _stores() -> dict[str, StoreSnapshot]:
    raw = json.loads(gzip.decompress((RUN / "stores.json.gz").read_bytes()))
    return {
        node: StoreSnapshot(
            node,
            {
                agent: AgentStore(
                    tuple(map(tuple, a["entries"])), a["authority_state"], a["reason"]
                )
                for agent, a in agents.items()
            },
        )
        for node, agents in raw.items()
    }


def test_the_restored_owners_window_interleaves_with_both_later_owners() -> None:
    found = check_overlap(_histories()).violations
    assert found and all(isinstance(v, OverlapViolation) for v in found)
    pairs = {frozenset((v.first.node, v.second.node)) for v in found}
    assert pairs == {frozenset(("n1", "n2")), frozenset(("n1", "n3"))}
    stale = next(v.first for v in found if v.first.node == "n1")
    assert stale.epoch == 1 and stale.end_ns > FACTS["restarted_ns"]


def test_the_restored_owners_ticks_fork_its_own_lineage() -> None:
    history = _histories()
    forks = check_lineage(build_lineages(history, _stores())).violations
    assert forks and all(isinstance(v, ForkViolation) for v in forks)
    assert all(set(v.nodes()) == {"n1"} for v in forks)


def test_the_whole_checker_fails_the_run_and_says_which_checks() -> None:
    result = check(_histories(), stores=_stores(), config=CheckConfig(check_liveness=False))
    assert not result.ok
    assert result.counts["overlap"].violations >= 2
    assert result.counts["lineage"].violations >= 1
    assert "n1 held epoch 1" in result.to_text()


def test_without_the_restored_owners_late_ticks_the_windows_do_not_interleave() -> None:
    # The same recording, minus what n1 did after it came back: the check is about those ticks.
    history = _histories()
    kept = [
        e for e in history.events if not (e.node == "n1" and e.mono_ns >= FACTS["restarted_ns"])
    ]
    assert check_overlap(merge([kept])).violations == []
