"""Retention: compaction keeps the custody, the last checkpoint of each epoch and the last N
checkpoints, keeps the lineage verifiable, bounds the rows, and never pauses ticking."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from core.builders import NODE_A, NODE_B, NODE_C, AgentLife

from igor_p2p.authority.record import AuthorityRecord, PendingCopy
from igor_p2p.authority.states import AuthorityState
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.store import (
    RETAIN_ALL,
    AppendEntries,
    AppendTicks,
    Compaction,
    CompactLineage,
    DiscardCopy,
    GroupCommitter,
    InvalidOp,
    InvalidRetention,
    PutRecord,
    Retention,
    SqliteAuthorityStore,
    Store,
)

from .helpers import launch, owner


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "igor.db")
    yield s
    s.close()


def _compact(store: Store, agent: str, keep_last: int, limit: int = 64) -> int:
    dropped = 0
    while True:
        (result,) = store.apply([CompactLineage(agent, keep_last, limit)])
        assert isinstance(result, Compaction)
        dropped += result.dropped
        if not result.more:
            return dropped


def _verified(store: Store, life: AgentLife) -> None:
    report = verify_lineage(store.lineage(life.agent), expected_agent=life.agent, ordered=True)
    assert report.valid, report.problems
    assert report.head == life.head


def test_rows_stay_bounded_however_many_ticks_an_agent_commits(store: Store) -> None:
    keep_last = 8
    life = launch(store, ticks=0)
    epochs = [(NODE_A, 1)]
    for to, epoch in ((NODE_B, 2), (NODE_C, 3), (NODE_A, 4)):
        for _ in range(6):
            store.apply([AppendTicks.of(life.agent, epoch - 1, life.ticks(50))])
            _compact(store, life.agent, keep_last)
        life.migrate(to)
        store.apply(
            [AppendEntries(life.agent, life.blobs(-3)), PutRecord(life.agent, owner(epoch))]
        )
        epochs.append((to, epoch))
    for _ in range(6):
        store.apply([AppendTicks.of(life.agent, 4, life.ticks(50))])
        _compact(store, life.agent, keep_last)
    assert life.tick == 4 * 300
    rows = store.lineage_rows(life.agent)
    # The genesis; per epoch change its HANDOFF, TRANSFER and CERT; the last keep_last
    # checkpoints. Every other of the 1,200 ticks is gone.
    assert len(rows) == 1 + 3 * 3 + keep_last
    assert [s.epoch for s in store.custody(life.agent)] == [1, 2, 3, 4]
    assert store.last_checkpoint(life.agent) == life.entries[-1]
    assert [r.blob for r in rows[-keep_last:]] == life.blobs(-keep_last)
    _verified(store, life)
    assert store.check_integrity() == []


def test_the_tick_a_custody_record_names_is_kept(store: Store) -> None:
    """A resume after a crash names the last TICK of the epoch as its prev."""
    life = launch(store, ticks=30)
    life.transfer(NODE_A)
    life.certify()
    store.apply([AppendEntries(life.agent, life.blobs(-2)), PutRecord(life.agent, owner(2))])
    store.apply([AppendTicks.of(life.agent, 2, life.ticks(30))])
    _compact(store, life.agent, keep_last=2)
    kinds = [r.kind for r in store.lineage_rows(life.agent)]
    assert kinds == ["GENESIS", "TICK", "TRANSFER", "CERT", "TICK", "TICK"]
    _verified(store, life)


def test_retain_all_drops_nothing(store: Store) -> None:
    life = launch(store, ticks=100)

    async def main() -> int:
        committer = GroupCommitter(store)
        async with trio.open_nursery() as nursery:
            await nursery.start(committer.run)
            dropped = await SqliteAuthorityStore(store, committer).compact(life.agent, RETAIN_ALL)
            await committer.aclose()
        return dropped

    assert trio.run(main) == 0
    assert store.lineage(life.agent) == life.blobs()


def test_a_policy_keeps_at_least_the_last_checkpoint(store: Store) -> None:
    with pytest.raises(InvalidRetention):
        Retention(keep_last=0)
    life = launch(store)
    with pytest.raises(InvalidOp):
        store.apply([CompactLineage(life.agent, keep_last=0)])


def test_compaction_waits_for_appends_in_the_same_transaction(store: Store) -> None:
    life = launch(store, ticks=40)
    life.handoff()
    results = store.apply(
        [AppendEntries(life.agent, life.blobs(-1)), CompactLineage(life.agent, keep_last=1)]
    )
    assert results[1] == Compaction(0, more=True)
    assert len(store.lineage(life.agent)) == 42
    # Ticks are different: they only add rows after the head, so they share the transaction.
    other = launch(store, "other", ticks=40)
    results = store.apply(
        [CompactLineage(other.agent, 1), AppendTicks.of(other.agent, 1, other.ticks(2))]
    )
    assert results[0] == Compaction(39, more=False)
    assert store.lineage(other.agent) == [other.blobs()[0], *other.blobs(-3)]
    _verified(store, other)


def test_a_pending_copy_is_not_compacted_and_can_still_be_discarded(store: Store) -> None:
    life = launch(store, ticks=20)
    life.handoff()
    life.transfer(NODE_B)
    life.certify()
    retired = AuthorityRecord(state=AuthorityState.RETIRED, epoch=1)
    store.apply([AppendEntries(life.agent, life.blobs(21)), PutRecord(life.agent, retired)])
    held = len(store.lineage(life.agent))
    life.ticks(20)
    life.handoff()
    life.transfer(NODE_A)
    pending = AuthorityRecord(
        state=AuthorityState.HANDOFF_PENDING,
        epoch=2,
        pending=PendingCopy(bytes(16), NODE_B.public_key, life.entries[-2].digest()),
    )
    store.apply([AppendEntries(life.agent, life.blobs(held)), PutRecord(life.agent, pending)])
    _compact(store, life.agent, keep_last=1)
    rows = store.lineage_rows(life.agent)
    assert [r.blob for r in rows if r.seq >= held - 1] == life.blobs(held - 1)
    store.apply([DiscardCopy(life.agent), PutRecord(life.agent, retired)])
    assert store.head(life.agent) == life.entries[held - 1].digest()
    assert store.check_integrity() == []
    assert [r.kind for r in store.lineage_rows(life.agent)] == [
        "GENESIS",
        "HANDOFF",
        "TRANSFER",
        "CERT",
    ]


async def test_compaction_runs_between_tick_commits(tmp_path: Path) -> None:
    """Compaction goes in small transactions: an agent keeps committing ticks meanwhile."""
    store = Store.open(tmp_path / "igor.db")
    big = launch(store, "big", ticks=0)
    for _ in range(10):
        store.apply([AppendTicks.of(big.agent, 1, big.ticks(200))])
    busy = launch(store, "busy", ticks=0)
    committer = GroupCommitter(store)
    adapter = SqliteAuthorityStore(store, committer)
    done = trio.Event()
    during = 0

    async def ticking() -> None:
        nonlocal during
        while not done.is_set():
            await adapter.append_ticks(busy.agent, 1, busy.ticks(1))
            during += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        nursery.start_soon(ticking)
        before = store.transactions_committed
        dropped = await adapter.compact(big.agent, Retention(keep_last=16), batch=50)
        transactions = store.transactions_committed - before
        done.set()
        await committer.aclose()
    try:
        assert dropped == 2000 - 16
        assert transactions >= dropped // 50
        assert during >= dropped // 50 // 2  # ticks went on between the compaction batches
        assert store.lineage(busy.agent) == busy.blobs()
        _verified(store, big)
        assert store.check_integrity() == []
    finally:
        store.close()
