"""The integrity check names each kind of damage and open() fails the agent stop."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from igor_p2p.authority.states import AuthorityState
from igor_p2p.store import DamageKind, Store

from .helpers import launch

A = "did:key:z6MkA"
B = "did:key:z6MkB"


def _build(tmp_path: Path, n: int = 10) -> Path:
    path = tmp_path / "igor.db"
    s = Store.open(path)
    ops_a, _ = launch(A, n)
    ops_b, _ = launch(B, n)
    s.apply([*ops_a, *ops_b])
    assert s.check_integrity() == []
    s.close()
    return path


def _tamper(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path)  # foreign keys are off on this raw connection
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


def test_flipped_byte_in_a_row_is_a_digest_mismatch(tmp_path: Path) -> None:
    path = _build(tmp_path)
    _tamper(path, "UPDATE lineage SET blob = blob || x'00' WHERE agent = ? AND seq = 7", A)
    assert _kinds(path) == {A: {DamageKind.DIGEST_MISMATCH}}


def test_flipped_byte_in_genesis_is_found_beyond_the_tail(tmp_path: Path) -> None:
    path = _build(tmp_path, n=100)
    _tamper(
        path,
        "UPDATE lineage SET blob = CAST(? AS BLOB) WHERE agent = ? AND seq = 0",
        b"Xdid:key:z6MkA:0",
        A,
    )
    assert _kinds(path) == {A: {DamageKind.DIGEST_MISMATCH}}


def test_deleted_head_row_is_named(tmp_path: Path) -> None:
    path = _build(tmp_path)
    _tamper(path, "DELETE FROM lineage WHERE agent = ? AND seq = 9", B)
    assert DamageKind.HEAD_MISSING in _kinds(path)[B]
    assert A not in _kinds(path)


def test_deleted_middle_row_is_a_seq_gap(tmp_path: Path) -> None:
    path = _build(tmp_path, n=200)  # row 50 is outside the 64-row tail: found by counting
    _tamper(path, "DELETE FROM lineage WHERE agent = ? AND seq = 50", A)
    assert _kinds(path) == {A: {DamageKind.SEQ_GAP}}


def test_head_pointing_at_missing_digest_is_named(tmp_path: Path) -> None:
    path = _build(tmp_path)
    _tamper(path, "UPDATE authority SET head = ? WHERE agent = ?", b"\x01" * 32, A)
    assert _kinds(path) == {A: {DamageKind.HEAD_MISSING}}


def test_broken_link_in_the_tail_is_named(tmp_path: Path) -> None:
    path = _build(tmp_path)
    _tamper(path, "UPDATE lineage SET prev = ? WHERE agent = ? AND seq = 5", b"\x02" * 32, A)
    assert _kinds(path) == {A: {DamageKind.BROKEN_LINK}}


def test_wrong_head_seq_is_named(tmp_path: Path) -> None:
    path = _build(tmp_path)
    _tamper(path, "UPDATE authority SET head_seq = 3 WHERE agent = ?", A)
    assert _kinds(path) == {A: {DamageKind.HEAD_SEQ_MISMATCH}}


def test_open_puts_damaged_agent_into_recovery_required_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    path = _build(tmp_path)
    _tamper(path, "DELETE FROM lineage WHERE agent = ? AND seq = 9", A)
    s = Store.open(path)
    try:
        rec = s.authority(A)
        assert rec is not None and rec.state is AuthorityState.RECOVERY_REQUIRED
        assert "HEAD_MISSING" in rec.reason
        assert len(s.lineage(A)) == 9
        assert s.authority(B).state is AuthorityState.ACTIVE_OWNER  # type: ignore[union-attr]
        assert [p.agent for p in s.problems_at_open] == [A]
    finally:
        s.close()


def test_mark_recovery_required_keeps_head_and_lineage(tmp_path: Path) -> None:
    path = _build(tmp_path)
    s = Store.open(path)
    before = s.authority(A)
    s.mark_recovery_required(A, "operator asked")
    after = s.authority(A)
    assert after is not None and before is not None
    assert after.state is AuthorityState.RECOVERY_REQUIRED and after.reason == "operator asked"
    assert (after.head, after.head_seq, after.epoch) == (before.head, before.head_seq, before.epoch)
    assert len(s.lineage(A)) == 10
    s.close()
