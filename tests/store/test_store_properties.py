"""Random op batches never leave damage the integrity check can see, never leave a lineage that
does not verify, and a refused batch leaves nothing."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from core.builders import NODE_A, NODE_B, AgentLife
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igor_p2p.authority.record import AuthorityRecord
from igor_p2p.authority.states import AuthorityState
from igor_p2p.lineage.cert import WitnessCert
from igor_p2p.lineage.entries import LineageEntry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.store import (
    AppendEntries,
    AppendTicks,
    CompactLineage,
    DiscardCopy,
    NewEntry,
    Op,
    PutRecord,
    Store,
    StoreError,
    StoreRefused,
)

STATES = [
    AuthorityState.ACTIVE_OWNER,
    AuthorityState.HANDOFF_PENDING,
    AuthorityState.RETIRED,
    AuthorityState.HALTED,
]


@cache
def lives() -> tuple[AgentLife, ...]:
    """Two agents' full lives; batches append pieces of them in order."""
    out = []
    for name in ("p", "q"):
        life = AgentLife(name)
        life.genesis()
        life.ticks(10)
        life.migrate(NODE_B)
        life.ticks(10)
        life.migrate(NODE_A)
        life.ticks(5)
        out.append(life)
    return tuple(out)


def _is_tick(entry: object) -> bool:
    return isinstance(entry, Checkpoint) and entry.kind is CheckpointKind.TICK


def _epoch_at(entries: list[LineageEntry], index: int) -> int:
    for entry in reversed(entries[: index + 1]):
        if isinstance(entry, Checkpoint):
            return entry.epoch
        if isinstance(entry, WitnessCert):
            return entry.slot
    return 1


def _draw_ops(data: st.DataObject, store: Store) -> list[Op]:
    life = lives()[data.draw(st.integers(0, 1))]
    entries = life.entries
    head = store.head(life.agent)
    digests = [e.digest() for e in entries]
    nxt = digests.index(head) + 1 if head in digests else 0
    epoch = _epoch_at(entries, nxt - 1)
    ops: list[Op] = []
    if store.record(life.agent) is None and data.draw(st.booleans()):
        ops.append(PutRecord(life.agent, AuthorityRecord(state=AuthorityState.ACTIVE_OWNER)))
    kind = data.draw(st.sampled_from(["append", "append", "ticks", "record", "discard", "compact"]))
    if kind == "append":
        start = max(0, nxt - data.draw(st.integers(0, 2)))  # may repeat entries already held
        picked = list(range(start, min(len(entries), start + data.draw(st.integers(1, 6)))))
        skip = data.draw(st.sets(st.sampled_from(picked))) if picked else set()
        # Only TICKs may be compacted away (anything else makes a gap the store refuses).
        kept = [i for i in picked if i not in skip or not _is_tick(entries[i])]
        ops.append(AppendEntries(life.agent, [entries[i].encode() for i in kept]))
    elif kind == "ticks":
        piece = entries[nxt : nxt + data.draw(st.integers(1, 4))]
        checkpoints = [e for e in piece if isinstance(e, Checkpoint)]
        epoch = checkpoints[0].epoch if checkpoints else epoch
        if data.draw(st.booleans()):
            ops.append(PutRecord(life.agent, AuthorityRecord(AuthorityState.ACTIVE_OWNER, epoch)))
        ops.append(AppendTicks(life.agent, epoch, [NewEntry.of_checkpoint(c) for c in checkpoints]))
    elif kind == "record":
        state = data.draw(st.sampled_from(STATES))
        at = data.draw(st.sampled_from([epoch, epoch, 1, 2, 3]))
        ops.append(PutRecord(life.agent, AuthorityRecord(state=state, epoch=at)))
    elif kind == "discard":
        ops.append(DiscardCopy(life.agent))
    else:
        keep = data.draw(st.integers(1, 3))
        ops.append(CompactLineage(life.agent, keep, data.draw(st.integers(1, 8))))
    return ops


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_random_batches_keep_the_store_intact_and_verifiable(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "igor.db")
        agents = [life.agent for life in lives()]
        try:
            for _ in range(data.draw(st.integers(1, 24))):
                # the ops of one batch are drawn against the state before the batch
                ops = [
                    op for _ in range(data.draw(st.integers(1, 3))) for op in _draw_ops(data, store)
                ]
                before = {a: (store.lineage(a), store.record(a)) for a in agents}
                try:
                    store.apply(ops)
                except (StoreError, StoreRefused):
                    assert {a: (store.lineage(a), store.record(a)) for a in agents} == before
                assert store.check_integrity() == []
                for agent in agents:
                    lineage = store.lineage(agent)
                    if lineage:
                        report = verify_lineage(lineage, expected_agent=agent, ordered=True)
                        assert report.valid, report.problems
                        assert report.head == store.head(agent)
            # what was committed is what a fresh process reads
            views = {a: (store.lineage(a), store.record(a), store.custody(a)) for a in agents}
            store.close()
            store = Store.open(Path(tmp) / "igor.db")
            assert store.problems_at_open == []
            assert {
                a: (store.lineage(a), store.record(a), store.custody(a)) for a in agents
            } == views
        finally:
            store.close()
