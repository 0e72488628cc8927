"""Store.apply rules: records and derived columns, the chain, gaps, the sink fence, pending
copies, custody, witness state, atomicity, schema versioning."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from core.builders import NODE_B, NODE_C, AgentLife

from igor_p2p.authority.record import (
    AuthorityRecord,
    PendingCopy,
    RecoveryReason,
    Successor,
    columns,
    decode_record,
)
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.lineage.export import UnsignedExportRecord
from igor_p2p.store import (
    AppendEntries,
    AppendTicks,
    ChainBreak,
    CompactLineage,
    DiscardCopy,
    InvalidOp,
    NewEntry,
    PutManifest,
    PutModule,
    PutRecord,
    PutWitness,
    PutWitnessChain,
    SchemaTooNew,
    SchemaTooOld,
    Store,
    StoreCorrupt,
    StoreError,
    StoreRefused,
    UnknownAgent,
)
from igor_p2p.store.schema import SCHEMA_VERSION

from .helpers import launch, owner


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


# --------------------------------------------------------------------------- records


def test_a_record_is_stored_whole_with_the_columns_derived_from_it(store: Store) -> None:
    life = launch(store)
    record = AuthorityRecord(
        state=AuthorityState.HANDOFF_PENDING,
        epoch=4,
        witnesses=(bytes(32),),
        pending=PendingCopy(bytes(16), NODE_B.public_key, bytes(range(32))),
        successor=Successor(5, NODE_C.public_key),
        reason=RecoveryReason.RESTORED_COPY,
        detail="restored",
        version=7,
    )
    store.apply([PutRecord(life.agent, record)])
    blob, state, epoch, fence, reason, peer = store._conn.execute(
        "SELECT record, state, epoch, fence, reason, peer FROM authority WHERE agent = ?",
        (life.agent,),
    ).fetchone()
    assert decode_record(blob) == record == store.record(life.agent)
    c = columns(record)
    assert (state, epoch, fence, reason, peer) == (c.state, c.epoch, c.fence, c.reason, c.peer)
    assert fence == 5


def test_agents_with_state_reads_the_derived_state(store: Store) -> None:
    a = launch(store, "a")
    b = launch(store, "b")
    store.apply([PutRecord(b.agent, AuthorityRecord(state=AuthorityState.HALTED, epoch=1))])
    assert store.agents_with_state(AuthorityState.ACTIVE_OWNER) == [a.agent]
    both = store.agents_with_state(AuthorityState.HALTED, AuthorityState.ACTIVE_OWNER)
    assert both == sorted([a.agent, b.agent])
    assert [agent for agent, _ in store.records()] == sorted([a.agent, b.agent])


def test_lineage_rows_need_an_authority_record(store: Store) -> None:
    life = AgentLife()
    life.genesis()
    with pytest.raises(UnknownAgent):
        store.apply([AppendEntries(life.agent, life.blobs())])
    assert store.lineage(life.agent) == []
    # The record may come later in the same transaction.
    store.apply([AppendEntries(life.agent, life.blobs()), PutRecord(life.agent, owner())])
    assert store.lineage(life.agent) == life.blobs()
    assert store.head(life.agent) == life.head


# --------------------------------------------------------------------------- the chain


def test_rows_carry_the_columns_of_their_entries(store: Store) -> None:
    life = launch(store, ticks=2)
    life.migrate(NODE_B)
    life.ticks(1)
    store.apply([AppendEntries(life.agent, life.blobs(3)), PutRecord(life.agent, owner(2))])
    rows = store.lineage_rows(life.agent)
    assert [r.kind for r in rows] == [
        "GENESIS", "TICK", "TICK", "HANDOFF", "TRANSFER", "CERT", "TICK",
    ]  # fmt: skip
    assert [r.epoch for r in rows] == [1, 1, 1, 1, 2, 2, 2]
    assert [r.tick for r in rows] == [0, 1, 2, 2, 2, 2, 3]
    assert [r.seq for r in rows] == list(range(7))
    assert not any(r.gap for r in rows)
    assert [r.blob for r in rows] == life.blobs()
    assert store.files(life.agent) == (life.entries[0].wasm_hash, life.entries[0].manifest_hash)


def test_an_export_record_ends_the_lineage_as_its_own_row(store: Store) -> None:
    """The terminal export-to-Go record is stored after the head (kind EXPORT); the last
    checkpoint is still the one before it, and the store stays intact."""
    life = launch(store, ticks=2)
    head = life.entries[-1]
    export = UnsignedExportRecord(
        agent=life.agent,
        epoch=1,
        owner=life.owner.public_key,
        prev=life.head,
        tick=head.tick,  # type: ignore[union-attr]
        go_checkpoint=hashlib.sha256(b"go blob").digest(),
        wall_ns=head.wall_ns + 1,  # type: ignore[union-attr]
    ).sign(life.owner)
    store.apply(
        [
            AppendEntries(life.agent, [export.encode()]),
            PutRecord(life.agent, AuthorityRecord(AuthorityState.EXPORTED, epoch=1, version=2)),
        ]
    )
    rows = store.lineage_rows(life.agent)
    assert [(r.kind, r.epoch, r.tick) for r in rows[-2:]] == [("TICK", 1, 2), ("EXPORT", 1, 2)]
    assert store.head(life.agent) == export.digest()
    assert store.last_checkpoint(life.agent) == head
    assert store.check_integrity() == []


def test_a_digest_that_is_not_sha256_of_the_blob_is_a_chain_break(store: Store) -> None:
    life = launch(store, ticks=0)
    ck = life.tick_checkpoint()
    row = NewEntry.of_checkpoint(ck)
    forged = NewEntry(bytes(32), row.prev, row.kind, row.epoch, row.tick, row.blob)
    with pytest.raises(ChainBreak):
        store.apply([AppendEntries(life.agent, [forged])])
    with pytest.raises(ChainBreak):
        store.apply([AppendTicks(life.agent, 1, [forged])])
    assert store.lineage(life.agent) == life.blobs(0, 1)


def test_an_entry_already_held_is_skipped_with_dedupe_and_refused_without(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "igor.db")
    life = launch(store, ticks=5)
    store.close()
    store = Store.open(tmp_path / "igor.db")  # the digest filter is rebuilt from the table
    try:
        assert store.apply([AppendEntries(life.agent, life.blobs(2, 4))]) == [[]]
        with pytest.raises(ChainBreak):
            store.apply([AppendEntries(life.agent, life.blobs(2, 3), dedupe=False)])
        life.handoff()
        assert store.apply([AppendEntries(life.agent, life.blobs(), dedupe=True)]) == [
            life.blobs(-1)
        ]
        assert store.lineage(life.agent) == life.blobs()
    finally:
        store.close()


def test_an_entry_after_a_compacted_gap_is_marked(store: Store) -> None:
    life = launch(store, ticks=2)
    life.ticks(3)
    store.apply([AppendEntries(life.agent, life.blobs(-1))])  # ticks 3 and 4 are missing
    rows = store.lineage_rows(life.agent)
    assert [r.gap for r in rows] == [False, False, False, True]
    assert store.head(life.agent) == life.head
    assert store.check_integrity() == []


def test_entries_missing_around_a_custody_record_are_refused(store: Store) -> None:
    life = launch(store, ticks=2)
    life.handoff()
    life.transfer(NODE_B)
    life.certify()
    life.ticks(2)
    handoff, transfer, cert, first, second = life.blobs(3)
    refused = [
        [handoff, cert],  # the record is missing before its certificate
        [handoff, transfer, first],  # the certificate is missing
        [first, second],  # the whole epoch change is missing: a gap across epochs
    ]
    for entries in refused:
        with pytest.raises(StoreRefused):
            store.apply([AppendEntries(life.agent, entries)])
        assert store.lineage(life.agent) == life.blobs(0, 3)
    # A gap before a transfer record (its HANDOFF compacted away) is allowed.
    store.apply([AppendEntries(life.agent, [transfer, cert, first])])
    assert [r.gap for r in store.lineage_rows(life.agent)][-3:] == [True, False, False]


def test_a_record_and_its_certificate_committed_apart_start_an_epoch(store: Store) -> None:
    """(SimStore pairs them only within one commit: weaker than this store.)"""
    life = launch(store)
    life.handoff()
    life.transfer(NODE_B)
    store.apply([AppendEntries(life.agent, life.blobs(4))])
    assert [s.epoch for s in store.custody(life.agent)] == [1]
    life.certify()
    store.apply([AppendEntries(life.agent, life.blobs(-1))])
    assert [s.epoch for s in store.custody(life.agent)] == [1, 2]
    assert store.custody(life.agent)[1].owner == NODE_B.public_key


def test_the_cached_custody_grows_with_each_commit_and_equals_a_fresh_read(store: Store) -> None:
    # An old agent's custody is not decoded again after every handoff: a commit's new links
    # continue the cached custody (testnet soak: at 1,100 epochs each handoff took seconds).
    life = launch(store)
    store.custody(life.agent)  # cached
    for n, node in enumerate((NODE_B, NODE_C, NODE_B), start=2):
        life.migrate(node)
        store.apply([AppendEntries(life.agent, life.blobs(-3))])
        cached = store.cached_custody(life.agent)
        assert cached is not None and [s.epoch for s in cached] == list(range(1, n + 1))
        store._custody.items.clear()
        assert store.custody(life.agent) == cached  # what the rows say, decoded afresh


def test_custody_never_reads_tick_checkpoints(store: Store) -> None:
    life = launch(store, ticks=4)
    life.migrate(NODE_B)
    store.apply([AppendEntries(life.agent, life.blobs(5)), PutRecord(life.agent, owner(2))])
    expected = store.custody(life.agent)
    store._conn.execute("UPDATE lineage SET blob = x'00' WHERE kind IN ('TICK', 'HANDOFF')")
    store._custody.items.clear()
    assert store.custody(life.agent) == expected
    assert [s.epoch for s in expected] == [1, 2]
    plan = store._conn.execute(
        "EXPLAIN QUERY PLAN SELECT kind, blob FROM lineage WHERE agent = ? AND kind IN "
        "('GENESIS', 'IMPORT', 'TRANSFER', 'FORCED', 'CERT') ORDER BY seq",
        (life.agent,),
    ).fetchall()
    assert "lineage_custody" in " ".join(str(row) for row in plan)


# --------------------------------------------------------------------------- the sink fence


def test_ticks_must_link_to_the_head_one_after_another(store: Store) -> None:
    life = launch(store, ticks=1)
    first, second = life.ticks(2)
    with pytest.raises(StoreRefused):
        store.apply([AppendTicks.of(life.agent, 1, [second])])
    with pytest.raises(StoreRefused):
        store.apply([AppendTicks.of(life.agent, 1, [second, first])])
    store.apply([AppendTicks.of(life.agent, 1, [first, second])])
    assert store.lineage(life.agent) == life.blobs()


def test_ticks_take_checkpoints_of_their_epoch_only(store: Store) -> None:
    life = launch(store, ticks=1)
    store.apply([PutRecord(life.agent, owner(epoch=2))])
    with pytest.raises(StoreRefused):
        store.apply([AppendTicks.of(life.agent, 2, life.ticks(1))])  # a checkpoint of epoch 1
    assert len(store.lineage(life.agent)) == 2


def test_ticks_take_no_custody_entry(store: Store) -> None:
    life = launch(store, ticks=1)
    life.handoff()
    record = life.transfer(NODE_B)
    row = NewEntry(record.digest(), record.prev, "TRANSFER", 2, 0, record.encode())
    with pytest.raises(InvalidOp):
        store.apply([AppendTicks(life.agent, 1, [NewEntry.of_checkpoint(life.entries[-2]), row])])


def test_the_fence_reads_the_record_of_the_same_transaction(store: Store) -> None:
    life = launch(store, ticks=1)
    retired = AuthorityRecord(state=AuthorityState.RETIRED, epoch=1, version=2)
    with pytest.raises(StoreRefused):
        store.apply([PutRecord(life.agent, retired), AppendTicks.of(life.agent, 1, life.ticks(1))])
    assert store.record(life.agent) == owner()  # nothing of the refused batch was applied
    store.apply([AppendTicks.of(life.agent, 1, life.entries[-1:])])
    assert store.head(life.agent) == life.head


# --------------------------------------------------------------------------- pending copies


def test_discard_copy_after_an_append_in_one_transaction_is_an_invalid_op(store: Store) -> None:
    life = launch(store)
    life.handoff()
    with pytest.raises(InvalidOp):
        store.apply([AppendEntries(life.agent, life.blobs(-1)), DiscardCopy(life.agent)])


def test_a_discarded_copy_may_be_offered_again(store: Store) -> None:
    life = AgentLife()
    life.genesis()
    life.ticks(3)
    life.handoff()
    pending = AuthorityRecord(
        state=AuthorityState.HANDOFF_PENDING,
        epoch=1,
        pending=PendingCopy(bytes(16), NODE_B.public_key, life.head),
    )
    ops = [AppendEntries(life.agent, life.blobs()), PutRecord(life.agent, pending)]
    store.apply(ops)
    # Dropped and received again in one transaction: the entries are not "already held".
    results = store.apply([DiscardCopy(life.agent), *ops])
    assert results[1] == life.blobs()
    assert store.lineage(life.agent) == life.blobs()
    assert store.check_integrity() == []


def test_after_a_whole_copy_is_discarded_the_next_copy_must_start_with_the_genesis(
    store: Store,
) -> None:
    life = AgentLife()
    life.genesis()
    life.ticks(3)
    pending = AuthorityRecord(
        state=AuthorityState.HANDOFF_PENDING,
        epoch=1,
        pending=PendingCopy(bytes(16), NODE_B.public_key, life.head),
    )
    store.apply([AppendEntries(life.agent, life.blobs()[:2]), PutRecord(life.agent, pending)])
    with pytest.raises(StoreRefused, match="genesis"):  # a TICK may not open a lineage
        store.apply([DiscardCopy(life.agent), AppendEntries(life.agent, life.blobs()[2:])])
    assert store.lineage(life.agent) == life.blobs()[:2]  # the refused batch left nothing
    assert store.check_integrity() == []


# --------------------------------------------------------------------------- atomicity


def test_a_batch_with_one_refused_op_leaves_nothing(store: Store) -> None:
    a = launch(store, "a", ticks=1)
    b = AgentLife("b")
    b.genesis()
    life_ticks = a.ticks(1)
    with pytest.raises(StoreRefused):
        store.apply(
            [
                AppendTicks.of(a.agent, 1, life_ticks),
                PutModule(b"\0asm"),
                PutRecord(b.agent, owner()),
                AppendEntries(b.agent, b.blobs()),
                AppendTicks.of(b.agent, 2, b.ticks(1)),  # b owns epoch 1, not 2
            ]
        )
    assert store.lineage(a.agent) == a.blobs(0, 2)
    assert store.record(b.agent) is None
    assert store.module(hashlib.sha256(b"\0asm").digest()) is None
    store.apply([AppendTicks.of(a.agent, 1, life_ticks)])  # the cached view was not polluted
    assert store.head(a.agent) == life_ticks[0].digest()


def test_a_database_level_failure_rolls_back_the_whole_batch(store: Store) -> None:
    a = launch(store, "a", ticks=1)
    b = launch(store, "b", ticks=0)
    tick = b.tick_checkpoint()
    # A row behind the store's back makes UNIQUE(agent, seq) fire inside the transaction.
    store._conn.execute(
        "INSERT INTO lineage (agent, seq, digest, prev, kind, epoch, tick, gap, blob) "
        "VALUES (?, 1, ?, ?, 'TICK', 1, 0, 0, x'00')",
        (b.agent, hashlib.sha256(b"\0").digest(), bytes(32)),
    )
    with pytest.raises(StoreError):
        store.apply([PutRecord(a.agent, owner(version=5)), AppendTicks.of(b.agent, 1, [tick])])
    assert store.record(a.agent) == owner()


def test_apply_returns_one_result_per_op(store: Store) -> None:
    life = AgentLife()
    life.genesis()
    results = store.apply(
        [PutModule(b"w"), PutRecord(life.agent, owner()), AppendEntries(life.agent, life.blobs())]
    )
    assert results == [None, None, life.blobs()]


# --------------------------------------------------------------------------- other tables


def test_modules_and_manifests_are_deduplicated(store: Store) -> None:
    wasm = b"\0asm\x01\0\0\0"
    store.apply([PutModule(wasm), PutModule(wasm), PutManifest(b"{}")])
    store.apply([PutModule(wasm)])
    assert store.module(hashlib.sha256(wasm).digest()) == wasm
    assert store.manifest(hashlib.sha256(b"{}").digest()) == b"{}"
    assert store._conn.execute("SELECT count(*) FROM module").fetchone()[0] == 1


def test_a_witness_chain_only_grows(store: Store) -> None:
    life = AgentLife()
    life.genesis()
    life.migrate(NODE_B)
    life.migrate(NODE_C)
    s1, s2, s3 = life.starts
    store.apply([PutWitnessChain(life.agent, [s2]), PutWitnessChain(life.agent, [s1, s2, s3])])
    store.apply(
        [PutWitnessChain(life.agent, [s1]), PutWitness(life.agent, WitnessRecord(life.agent, s3))]
    )
    assert store.witness_starts(life.agent) == [s2, s3]
    assert store.witness(life.agent) == WitnessRecord(life.agent, s3)


# --------------------------------------------------------------------------- schema


def test_data_survives_reopen(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "igor.db")
    life = launch(s)
    s.close()
    s = Store.open(tmp_path / "igor.db")
    try:
        assert s.lineage(life.agent) == life.blobs()
        assert s.record(life.agent) == owner()
        assert s.problems_at_open == []
        life.ticks(1)
        s.apply([AppendTicks.of(life.agent, 1, life.entries[-1:])])  # the view is reloaded
        assert s.head(life.agent) == life.head
    finally:
        s.close()


def test_a_store_of_an_older_format_is_refused_with_what_to_do(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "igor.db")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    conn.execute("CREATE TABLE fence (agent TEXT PRIMARY KEY, epoch INTEGER, evidence TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooOld) as info:
        Store.open(tmp_path / "igor.db")
    message = str(info.value)
    assert "older Igor-P2P" in message and "cannot be upgraded" in message
    assert "move igor.db" in message and "launch or import the agents again" in message
    assert "Schema" not in message  # words, not class names
    assert (info.value.found, info.value.supported) == (2, SCHEMA_VERSION)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path / "igor.db").close()
    conn = sqlite3.connect(tmp_path / "igor.db")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew) as info:
        Store.open(tmp_path / "igor.db")
    assert info.value.found == 99
    assert "upgrade Igor-P2P" in str(info.value)


def test_schema_version_is_written_on_create(tmp_path: Path) -> None:
    Store.open(tmp_path / "igor.db").close()
    conn = sqlite3.connect(tmp_path / "igor.db")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert int(row[0]) == SCHEMA_VERSION == 4
    assert "fence" not in tables and "tombstone" not in tables


def test_a_file_that_is_not_a_database_is_store_corrupt(tmp_path: Path) -> None:
    (tmp_path / "igor.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreCorrupt):
        Store.open(tmp_path / "igor.db")


def test_only_put_record_writes_an_authority_state(store: Store) -> None:
    """Every other op, the integrity check and every read leave the record and its state alone
    (watched by SQLite's authorizer: an INSERT into ``authority`` or an UPDATE of a record
    column)."""
    life = launch(store, ticks=30)
    writes: list[tuple[str, str | None]] = []
    record_columns = {"record", "state", "epoch", "fence", "reason", "peer"}

    def watch(action: int, table: str | None, column: str | None, *_: object) -> int:
        if table == "authority" and (
            action == sqlite3.SQLITE_INSERT
            or (action == sqlite3.SQLITE_UPDATE and column in record_columns)
        ):
            writes.append((str(action), column))
        return sqlite3.SQLITE_OK

    store._conn.set_authorizer(watch)
    store.apply([AppendTicks.of(life.agent, 1, life.ticks(2))])
    life.handoff()
    life.transfer(NODE_B)
    life.certify()
    store.apply([AppendEntries(life.agent, life.blobs(-3))])
    store.apply([DiscardCopy(life.agent)])
    store.apply([CompactLineage(life.agent, keep_last=2), PutModule(b"w"), PutManifest(b"m")])
    store.apply([PutWitnessChain(life.agent, life.starts)])
    store.apply([PutWitness(life.agent, WitnessRecord(life.agent, life.starts[-1]))])
    assert store.check_integrity() == []
    assert store.custody(life.agent) and store.records() and store.lineage(life.agent)
    assert writes == []
    store.apply([PutRecord(life.agent, owner(epoch=2, version=2))])
    assert writes  # the watch sees the one op that writes a record
    assert store.record(life.agent) == owner(epoch=2, version=2)
