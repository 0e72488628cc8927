"""The integrity check run when the store opens (reads only)."""

from __future__ import annotations

import hashlib
import sqlite3

from igor_p2p.store.records import DamageKind, IntegrityProblem

TAIL_ROWS = 64
"""How many of each agent's last rows are hashed and link-checked (plus the genesis row)."""


def _sha256(blob: object) -> bytes | None:
    """sha256 of a stored blob; None when the column no longer holds bytes (damage)."""
    return hashlib.sha256(blob).digest() if isinstance(blob, bytes) else None


def check(conn: sqlite3.Connection) -> list[IntegrityProblem]:
    """Return every problem found; an empty list means the checked state is intact."""
    problems: list[IntegrityProblem] = []
    result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    if result != ["ok"]:
        problems.append(IntegrityProblem("", "; ".join(result)[:1000], DamageKind.FILE))
    agents = conn.execute("SELECT agent, head, head_seq FROM authority ORDER BY agent").fetchall()
    for agent, head, head_seq in agents:
        problems.extend(check_agent(conn, agent, head, head_seq))
    return problems


def check_agent(
    conn: sqlite3.Connection, agent: str, head: bytes | None, head_seq: int
) -> list[IntegrityProblem]:
    """Check one agent's head, its last TAIL_ROWS rows, its genesis row and seq contiguity."""
    out: list[IntegrityProblem] = []

    def problem(kind: DamageKind, reason: str) -> None:
        out.append(IntegrityProblem(agent, reason, kind))

    count, min_seq, max_seq = conn.execute(
        "SELECT count(*), min(seq), max(seq) FROM lineage WHERE agent = ?", (agent,)
    ).fetchone()
    if head is None:
        if head_seq != -1:
            problem(DamageKind.HEAD_SEQ_MISMATCH, f"no head but head_seq={head_seq}")
        if count:
            problem(DamageKind.ROWS_AFTER_HEAD, f"no head but {count} lineage rows")
        return out
    # The head normally is the row at head_seq (one index lookup); only a damaged record needs
    # the search through the whole chain (there is no index on digests).
    at_seq = conn.execute(
        "SELECT digest FROM lineage WHERE agent = ? AND seq = ?", (agent, head_seq)
    ).fetchone()
    if at_seq is not None and at_seq[0] == head:
        head_row: tuple[int] | None = (head_seq,)
    else:
        head_row = conn.execute(
            "SELECT seq FROM lineage WHERE agent = ? AND digest = ? ORDER BY seq LIMIT 1",
            (agent, head),
        ).fetchone()
    if head_row is None:
        problem(DamageKind.HEAD_MISSING, f"head {head.hex()[:16]}… names no row")
    else:
        if head_row[0] != head_seq:
            problem(
                DamageKind.HEAD_SEQ_MISMATCH, f"head row has seq {head_row[0]}, record {head_seq}"
            )
        if max_seq != head_row[0]:
            problem(DamageKind.ROWS_AFTER_HEAD, f"head is seq {head_row[0]}, last row {max_seq}")
    if count and (min_seq != 0 or count != max_seq + 1):
        problem(DamageKind.SEQ_GAP, f"{count} rows for seq {min_seq}..{max_seq}: rows are missing")
    tail = conn.execute(
        "SELECT seq, digest, prev, blob FROM lineage WHERE agent = ? ORDER BY seq DESC LIMIT ?",
        (agent, TAIL_ROWS),
    ).fetchall()
    tail.reverse()
    checked_seqs = set()
    for i, (seq, digest, prev, blob) in enumerate(tail):
        checked_seqs.add(seq)
        if _sha256(blob) != digest:
            problem(DamageKind.DIGEST_MISMATCH, f"seq {seq}: digest is not sha256(blob)")
        if i > 0:
            before_seq, before_digest = tail[i - 1][0], tail[i - 1][1]
            if seq != before_seq + 1:
                problem(DamageKind.SEQ_GAP, f"seq {before_seq} is followed by {seq}")
            elif prev != before_digest:
                problem(DamageKind.BROKEN_LINK, f"seq {seq}: prev is not the digest of {seq - 1}")
    if 0 not in checked_seqs:
        genesis = conn.execute(
            "SELECT digest, blob FROM lineage WHERE agent = ? AND seq = 0", (agent,)
        ).fetchone()
        if genesis is None:
            if count:
                problem(DamageKind.SEQ_GAP, "genesis row (seq 0) is missing")
        elif _sha256(genesis[1]) != genesis[0]:
            problem(DamageKind.DIGEST_MISMATCH, "seq 0: digest is not sha256(blob)")
    # one problem per kind is enough to name the damage
    seen: set[DamageKind] = set()
    unique = []
    for p in out:
        if p.kind not in seen:
            seen.add(p.kind)
            unique.append(p)
    return unique
