"""The integrity check names each kind of damage, and opening a damaged store writes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.builders import NODE_B

from igor_p2p.store import AppendEntries, CompactLineage, DamageKind, PutRecord, Store

from .helpers import launch, owner


def _build(tmp_path: Path) -> tuple[Path, str, str]:
    """Agent A: 100 ticks (beyond the hashed tail); agent B: a migration and a few ticks."""
    path = tmp_path / "igor.db"
    s = Store.open(path)
    a = launch(s, "a", ticks=100)
    b = launch(s, "b", ticks=3)
    b.migrate(NODE_B)
    b.ticks(3)
    s.apply([AppendEntries(b.agent, b.blobs(4)), PutRecord(b.agent, owner(2))])
    assert s.check_integrity() == []
    s.close()
    return path, a.agent, b.agent


def _tamper(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def _kinds(path: Path) -> dict[str, set[DamageKind]]:
    s = Store.open(path, check_on_open=False)
    try:
        out: dict[str, set[DamageKind]] = {}
        for p in s.check_integrity():
            out.setdefault(p.agent, set()).add(p.kind)
        return out
    finally:
        s.close()


def test_a_flipped_byte_in_a_recent_row_is_a_digest_mismatch(tmp_path: Path) -> None:
    path, a, _ = _build(tmp_path)
    _tamper(path, "UPDATE lineage SET blob = blob || x'00' WHERE agent = ? AND seq = 97", a)
    assert _kinds(path) == {a: {DamageKind.DIGEST_MISMATCH}}


def test_a_flipped_byte_in_the_genesis_is_found_beyond_the_tail(tmp_path: Path) -> None:
    path, a, _ = _build(tmp_path)
    _tamper(path, "UPDATE lineage SET blob = blob || x'00' WHERE agent = ? AND seq = 0", a)
    assert _kinds(path) == {a: {DamageKind.DIGEST_MISMATCH}}


def test_a_flipped_byte_in_a_custody_row_is_found(tmp_path: Path) -> None:
    path, _, b = _build(tmp_path)
    _tamper(path, "UPDATE lineage SET blob = blob || x'00' WHERE agent = ? AND kind = 'CERT'", b)
    assert _kinds(path) == {b: {DamageKind.DIGEST_MISMATCH}}


def test_a_deleted_row_anywhere_is_a_broken_link(tmp_path: Path) -> None:
    path, a, _ = _build(tmp_path)
    _tamper(path, "DELETE FROM lineage WHERE agent = ? AND seq = 5", a)
    assert _kinds(path) == {a: {DamageKind.BROKEN_LINK}}


def test_a_deleted_head_row_is_named(tmp_path: Path) -> None:
    path, a, _ = _build(tmp_path)
    _tamper(path, "DELETE FROM lineage WHERE agent = ? AND seq = 100", a)
    assert _kinds(path) == {a: {DamageKind.HEAD_MISSING}}


def test_rows_after_the_head_are_named(tmp_path: Path) -> None:
    path, a, _ = _build(tmp_path)
    _tamper(path, "UPDATE authority SET head = (SELECT digest FROM lineage WHERE agent = ?1 "
                  "AND seq = 99), head_seq = 99 WHERE agent = ?1", a)  # fmt: skip
    assert _kinds(path) == {a: {DamageKind.ROWS_AFTER_HEAD}}


def test_a_wrong_head_seq_is_named(tmp_path: Path) -> None:
    path, a, _ = _build(tmp_path)
    _tamper(path, "UPDATE authority SET head_seq = 50 WHERE agent = ?", a)
    assert _kinds(path) == {a: {DamageKind.HEAD_SEQ_MISMATCH}}


def test_a_gap_around_a_custody_record_is_a_bad_gap(tmp_path: Path) -> None:
    path, _, b = _build(tmp_path)
    _tamper(path, "DELETE FROM lineage WHERE agent = ? AND kind = 'CERT'", b)
    _tamper(path, "UPDATE lineage SET gap = 1 WHERE agent = ? AND seq = 7", b)
    assert _kinds(path) == {b: {DamageKind.BAD_GAP}}


def test_a_missing_genesis_is_named(tmp_path: Path) -> None:
    path, a, _ = _build(tmp_path)
    _tamper(path, "DELETE FROM lineage WHERE agent = ? AND seq = 0", a)
    _tamper(path, "UPDATE lineage SET gap = 1 WHERE agent = ? AND seq = 1", a)
    assert DamageKind.NO_GENESIS in _kinds(path)[a]


def test_a_record_whose_columns_were_changed_is_named(tmp_path: Path) -> None:
    path, a, b = _build(tmp_path)
    _tamper(path, "UPDATE authority SET state = 'RETIRED' WHERE agent = ?", a)
    _tamper(path, "UPDATE authority SET record = x'c0' WHERE agent = ?", b)
    assert _kinds(path) == {a: {DamageKind.RECORD}, b: {DamageKind.RECORD}}


def test_rows_without_a_record_and_bad_witness_records_are_named(tmp_path: Path) -> None:
    path, a, _ = _build(tmp_path)
    _tamper(path, "DELETE FROM authority WHERE agent = ?", a)
    _tamper(path, "INSERT INTO witness (agent, chosen, record) VALUES ('w', 1, x'00')")
    assert _kinds(path) == {a: {DamageKind.NO_RECORD}, "w": {DamageKind.WITNESS}}


def test_a_compacted_lineage_is_intact(tmp_path: Path) -> None:
    path, a, b = _build(tmp_path)
    s = Store.open(path)
    try:
        s.apply([CompactLineage(a, keep_last=4, limit=1000), CompactLineage(b, keep_last=1)])
        assert len(s.lineage(a)) == 1 + 4
        assert any(r.gap for r in s.lineage_rows(b))
        assert s.check_integrity() == []
    finally:
        s.close()


def test_opening_a_damaged_store_reports_the_damage_and_writes_nothing(tmp_path: Path) -> None:
    path, a, _ = _build(tmp_path)
    _tamper(path, "DELETE FROM lineage WHERE agent = ? AND seq = 5", a)

    def dump() -> list[tuple[object, ...]]:
        conn = sqlite3.connect(path)
        rows = conn.execute("SELECT * FROM authority ORDER BY agent").fetchall()
        rows += conn.execute("SELECT agent, seq, digest, gap FROM lineage ORDER BY agent, seq")
        conn.close()
        return rows

    before = dump()
    s = Store.open(path)
    try:
        assert {(p.agent, p.kind) for p in s.problems_at_open} == {(a, DamageKind.BROKEN_LINK)}
        assert s.transactions_committed == 0
        assert s.record(a) == owner()
    finally:
        s.close()
    assert dump() == before
