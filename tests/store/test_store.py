"""Store.apply rules: chaining, fences, heads, atomicity, schema versioning."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from igor_p2p.authority.states import AuthorityState
from igor_p2p.store import (
    AppendEntries,
    ChainBreak,
    DeleteLineage,
    FencedOff,
    HeadMismatch,
    InvalidOp,
    NotDiscardable,
    PutAuthority,
    PutManifest,
    PutModule,
    PutTombstone,
    RaiseFence,
    SchemaTooNew,
    Store,
    StoreCorrupt,
    StoreError,
)
from igor_p2p.store.schema import SCHEMA_VERSION

from .helpers import ZERO, chain, entry, launch, record

A = "did:key:z6MkA"
B = "did:key:z6MkB"


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "igor.db")
    yield s
    s.close()


def test_pragmas_are_wal_full_and_foreign_keys(store: Store) -> None:
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_appended_chain_is_read_back_in_order(store: Store) -> None:
    ops, entries = launch(A, 5)
    store.apply(ops)
    assert store.lineage(A) == [e.blob for e in entries]
    assert store.lineage(A, since_seq=3) == [e.blob for e in entries[3:]]
    rows = store.lineage_rows(A)
    assert [r.seq for r in rows] == [0, 1, 2, 3, 4]
    assert rows[2].prev == entries[1].digest
    assert store.head_blob(A) == entries[-1].blob
    rec = store.authority(A)
    assert rec is not None and rec.head == entries[-1].digest and rec.head_seq == 4


def test_first_entry_may_have_any_prev(store: Store) -> None:
    e = entry(b"\x07" * 32, b"imported")
    store.apply([AppendEntries(A, [e])])
    assert store.lineage(A) == [b"imported"]


def test_entry_not_linking_to_head_is_a_chain_break(store: Store) -> None:
    ops, _ = launch(A, 2)
    store.apply(ops)
    with pytest.raises(ChainBreak):
        store.apply([AppendEntries(A, [entry(ZERO, b"orphan")])])
    assert len(store.lineage(A)) == 2


def test_digest_that_is_not_sha256_of_blob_is_a_chain_break(store: Store) -> None:
    bad = entry(ZERO, b"one")
    bad = type(bad)(hashlib.sha256(b"other").digest(), ZERO, "K", 1, 0, b"one")
    with pytest.raises(ChainBreak):
        store.apply([AppendEntries(A, [bad])])
    assert store.lineage(A) == []


def test_entries_inside_one_op_must_link_to_each_other(store: Store) -> None:
    e0 = entry(ZERO, b"a")
    e1 = entry(ZERO, b"b")  # should link to e0
    with pytest.raises(ChainBreak):
        store.apply([AppendEntries(A, [e0, e1])])
    assert store.lineage(A) == []


def test_duplicate_digest_in_chain_is_a_chain_break(store: Store) -> None:
    e0 = entry(ZERO, b"same")
    e1 = entry(e0.digest, b"same")
    with pytest.raises(ChainBreak):
        store.apply([AppendEntries(A, [e0, e1])])


def test_duplicate_of_a_committed_digest_is_a_chain_break(tmp_path: Path) -> None:
    path = tmp_path / "igor.db"
    s = Store.open(path)
    es = chain(3)
    s.apply([AppendEntries(A, es)])
    again = entry(es[-1].digest, b"x:1")  # the blob of seq 1, linked to the tip
    with pytest.raises(ChainBreak):
        s.apply([AppendEntries(A, [again])])
    s.close()
    s = Store.open(path)  # a fresh store knows the committed digests from the table
    with pytest.raises(ChainBreak):
        s.apply([AppendEntries(A, [entry(es[-1].digest, b"x:0")])])
    s.apply([AppendEntries(A, [entry(es[-1].digest, b"new")])])
    assert len(s.lineage(A)) == 4
    s.close()


def test_digest_check_holds_across_many_committed_rows(store: Store) -> None:
    es = chain(3000)  # more rows than the first digest filter holds: it is rebuilt larger
    for i in range(0, len(es), 500):
        store.apply([AppendEntries(A, es[i : i + 500])])
    for old in (es[0], es[1234], es[-2]):
        with pytest.raises(ChainBreak):
            store.apply([AppendEntries(A, [entry(es[-1].digest, old.blob)])])
    store.apply([AppendEntries(A, [entry(es[-1].digest, b"fresh")])])
    assert len(store.lineage(A)) == 3001


def test_deleted_lineage_digests_may_be_appended_again(store: Store) -> None:
    es = chain(2)
    store.apply([AppendEntries(A, es)])
    store.apply([AppendEntries(A, [entry(es[-1].digest, b"more")])])
    store.apply([DeleteLineage(A), AppendEntries(A, es)])
    assert [r.digest for r in store.lineage_rows(A)] == [e.digest for e in es]


def test_appends_in_separate_ops_of_one_batch_chain(store: Store) -> None:
    es = chain(4)
    store.apply([AppendEntries(A, es[:2]), AppendEntries(A, es[2:])])
    assert len(store.lineage(A)) == 4


def test_bad_op_value_is_a_typed_error(store: Store) -> None:
    with pytest.raises(InvalidOp):
        store.apply([AppendEntries(A, [entry(b"short", b"x")])])
    with pytest.raises(InvalidOp):
        store.apply(["not an op"])  # type: ignore[list-item]


def test_fence_only_goes_up(store: Store) -> None:
    assert store.fence(A) == 0
    store.apply([RaiseFence(A, 5, "gossip from p1")])
    store.apply([RaiseFence(A, 3, "stale")])
    assert store.fence(A) == 5
    assert store.fence_evidence(A) == "gossip from p1"
    store.apply([RaiseFence(A, 7, "transfer record")])
    assert store.fence(A) == 7


def test_authority_below_fence_is_fenced_off(store: Store) -> None:
    ops, entries = launch(A, 1)
    store.apply([*ops, RaiseFence(A, 4, "peer says epoch 4")])
    with pytest.raises(FencedOff):
        store.apply([PutAuthority(record(A, entries[0], 0, epoch=3))])
    assert store.authority(A).epoch == 1  # type: ignore[union-attr]
    store.apply([PutAuthority(record(A, entries[0], 0, epoch=4))])
    assert store.authority(A).epoch == 4  # type: ignore[union-attr]


def test_authority_raises_the_fence_to_its_epoch(store: Store) -> None:
    ops, entries = launch(A, 1)
    store.apply(ops)
    store.apply([PutAuthority(record(A, entries[0], 0, epoch=9))])
    assert store.fence(A) == 9


def test_authority_head_must_be_the_last_row(store: Store) -> None:
    ops, entries = launch(A, 3)
    store.apply(ops)
    with pytest.raises(HeadMismatch):
        store.apply([PutAuthority(record(A, entries[1], 1))])
    with pytest.raises(HeadMismatch):
        store.apply([PutAuthority(record(A, entry(ZERO, b"nowhere"), 3))])
    with pytest.raises(HeadMismatch):
        store.apply([PutAuthority(record(A, entries[2], 1))])
    with pytest.raises(HeadMismatch):
        store.apply([PutAuthority(record(B, entries[0], 0))])


def test_append_advances_the_authority_head(store: Store) -> None:
    ops, entries = launch(A, 2)
    store.apply(ops)
    more = chain(2, prev=entries[-1].digest, tag=b"more")
    store.apply([AppendEntries(A, more)])
    rec = store.authority(A)
    assert rec is not None and rec.head == more[-1].digest and rec.head_seq == 3


def test_batch_with_one_bad_op_leaves_nothing(store: Store) -> None:
    ops, _ = launch(A, 3)
    bad = AppendEntries(B, [entry(ZERO, b"b0"), entry(ZERO, b"b1")])
    with pytest.raises(ChainBreak):
        store.apply(
            [*ops, RaiseFence(B, 3, "e"), PutModule(b"\0asm"), PutTombstone(B, 2, "p"), bad]
        )
    assert store.authorities() == []
    assert store.lineage(A) == []
    assert store.fence(B) == 0
    assert store.module(hashlib.sha256(b"\0asm").digest()) is None
    assert store.tombstone(B) is None
    store.apply(ops)  # the cached view was not polluted by the failed batch
    assert len(store.lineage(A)) == 3


def test_database_level_failure_rolls_back_the_whole_batch(store: Store) -> None:
    ops, _ = launch(A, 2)
    store.apply(ops)
    # Create a row behind the store's back so the UNIQUE(agent, seq) constraint fires inside
    # the transaction (after the deletes/inserts of other agents already ran).
    store._conn.execute(
        "INSERT INTO lineage (agent, seq, digest, prev, kind, epoch, tick, blob) "
        "VALUES (?, 0, ?, ?, 'K', 1, 0, x'00')",
        (B, hashlib.sha256(b"\0").digest(), ZERO),
    )
    store._tips.pop(B, None)
    store._tips[B] = None  # stale view: the store believes B has no rows
    with pytest.raises(StoreError):
        store.apply([RaiseFence(A, 8, "e"), AppendEntries(B, [entry(ZERO, b"b")])])
    assert store.fence(A) == 1


def test_modules_and_manifests_are_deduplicated(store: Store) -> None:
    wasm = b"\0asm\x01\0\0\0"
    store.apply([PutModule(wasm), PutModule(wasm), PutManifest(b"{}")])
    store.apply([PutModule(wasm)])
    assert store.module(hashlib.sha256(wasm).digest()) == wasm
    assert store.manifest(hashlib.sha256(b"{}").digest()) == b"{}"
    assert store._conn.execute("SELECT count(*) FROM module").fetchone()[0] == 1


def test_tombstone_keeps_the_newest_epoch(store: Store) -> None:
    store.apply([PutTombstone(A, 3, "peer3")])
    store.apply([PutTombstone(A, 2, "peer2")])
    t = store.tombstone(A)
    assert t is not None and (t.epoch, t.peer) == (3, "peer3")
    store.apply([PutTombstone(A, 4, "peer4")])
    assert store.tombstone(A).peer == "peer4"  # type: ignore[union-attr]


def test_delete_lineage_discards_an_aborted_pending_copy(store: Store) -> None:
    entries = chain(3)
    store.apply(
        [
            AppendEntries(A, entries),
            PutAuthority(record(A, entries[-1], 2, state=AuthorityState.HANDOFF_PENDING)),
        ]
    )
    pending = store.authority(A)
    assert pending is not None
    store.apply([DeleteLineage(A), PutAuthority(record(A, None, -1, AuthorityState.RETIRED))])
    assert store.lineage(A) == []
    assert store.authority(A).head is None  # type: ignore[union-attr]
    assert store.check_integrity() == []


def test_delete_lineage_of_an_owner_is_refused(store: Store) -> None:
    ops, _ = launch(A, 2)
    store.apply(ops)
    with pytest.raises(NotDiscardable):
        store.apply([DeleteLineage(A)])
    assert len(store.lineage(A)) == 2


def test_agents_with_state(store: Store) -> None:
    ops_a, _ = launch(A, 1)
    ops_b, eb = launch(B, 1)
    store.apply([*ops_a, *ops_b])
    store.apply([PutAuthority(record(B, eb[-1], 0, AuthorityState.HALTED))])
    assert store.agents_with_state(AuthorityState.ACTIVE_OWNER) == [A]
    assert store.agents_with_state(AuthorityState.HALTED, AuthorityState.ACTIVE_OWNER) == [A, B]
    assert [r.agent for r in store.authorities()] == [A, B]


def test_data_survives_reopen(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "igor.db")
    ops, entries = launch(A, 3)
    s.apply([*ops, RaiseFence(B, 2, "seen")])
    s.close()
    s = Store.open(tmp_path / "igor.db")
    assert s.lineage(A) == [e.blob for e in entries]
    assert s.fence(B) == 2
    assert s.problems_at_open == []
    s.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path / "igor.db").close()
    conn = sqlite3.connect(tmp_path / "igor.db")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew) as info:
        Store.open(tmp_path / "igor.db")
    assert info.value.found == 99
    assert info.value.found > SCHEMA_VERSION


def test_schema_version_is_written_on_create(tmp_path: Path) -> None:
    Store.open(tmp_path / "igor.db").close()
    conn = sqlite3.connect(tmp_path / "igor.db")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert int(row[0]) == SCHEMA_VERSION == 2


def test_non_database_file_is_store_corrupt(tmp_path: Path) -> None:
    (tmp_path / "igor.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreCorrupt):
        Store.open(tmp_path / "igor.db")
