"""The integrity check run when the store opens. It only reads: what to do about a damaged agent
is the authority table's decision (the node feeds it an integrity failure)."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3

from igor_p2p.authority.record import CorruptRecord, columns, decode_record
from igor_p2p.store.codec import CorruptWitness, decode_witness
from igor_p2p.store.gaps import gap_problem
from igor_p2p.store.records import DamageKind, IntegrityProblem
from igor_p2p.store.schema import CUSTODY_KINDS_SQL, GENESIS_KINDS

TAIL_ROWS = 64
"""How many of each agent's last rows have their blob hashed (plus the first row and every
custody row); links and gaps are checked on every row, from the columns."""


def _sha256(blob: object) -> bytes | None:
    """sha256 of a stored blob; None when the column no longer holds bytes (damage)."""
    return hashlib.sha256(blob).digest() if isinstance(blob, bytes) else None


def check(conn: sqlite3.Connection) -> list[IntegrityProblem]:
    """Return every problem found; an empty list means the checked state is intact."""
    problems: list[IntegrityProblem] = []
    result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    if result != ["ok"]:
        problems.append(IntegrityProblem("", "; ".join(result)[:1000], DamageKind.FILE))
    agents = conn.execute(
        "SELECT agent, CAST(record AS BLOB), state, epoch, fence, reason, peer, head, head_seq "
        "FROM authority ORDER BY agent"
    ).fetchall()
    for agent, blob, state, epoch, fence, reason, peer, head, head_seq in agents:
        found = _check_record(agent, blob, (state, epoch, fence, reason, peer))
        found.extend(check_agent(conn, agent, head, head_seq))
        problems.extend(_one_per_kind(found))
    for (agent,) in conn.execute(
        "SELECT DISTINCT agent FROM lineage WHERE agent NOT IN (SELECT agent FROM authority) "
        "ORDER BY agent"
    ):
        problems.append(
            IntegrityProblem(
                agent, "lineage rows without an authority record", DamageKind.NO_RECORD
            )
        )
    for agent, blob in conn.execute(
        "SELECT agent, CAST(record AS BLOB) FROM witness ORDER BY agent"
    ):
        try:
            decode_witness(blob)
        except CorruptWitness as exc:
            problems.append(IntegrityProblem(agent, f"witness record: {exc}", DamageKind.WITNESS))
    return problems


def _check_record(agent: str, blob: object, stored: tuple[object, ...]) -> list[IntegrityProblem]:
    if not isinstance(blob, bytes):
        return [IntegrityProblem(agent, "the authority record is not bytes", DamageKind.RECORD)]
    try:
        record = decode_record(blob)
    except CorruptRecord as exc:
        return [IntegrityProblem(agent, f"authority record: {exc}", DamageKind.RECORD)]
    c = columns(record)
    if (c.state, c.epoch, c.fence, c.reason, c.peer) != stored:
        return [
            IntegrityProblem(
                agent, "the record's columns differ from the record", DamageKind.RECORD
            )
        ]
    return []


def check_agent(
    conn: sqlite3.Connection, agent: str, head: bytes | None, head_seq: int
) -> list[IntegrityProblem]:
    """Check one agent's head, the links and gaps of its whole chain (from the columns), and
    the blobs of its first row, its custody rows and its last TAIL_ROWS rows."""
    out: list[IntegrityProblem] = []

    def problem(kind: DamageKind, reason: str) -> None:
        out.append(IntegrityProblem(agent, reason, kind))

    rows = conn.execute(
        "SELECT seq, digest, prev, kind, epoch, tick, gap FROM lineage WHERE agent = ? "
        "ORDER BY seq",
        (agent,),
    ).fetchall()
    if head is None:
        if head_seq != -1:
            problem(DamageKind.HEAD_SEQ_MISMATCH, f"no head but head_seq={head_seq}")
        if rows:
            problem(DamageKind.ROWS_AFTER_HEAD, f"no head but {len(rows)} lineage rows")
    else:
        head_rows = [r[0] for r in rows if r[1] == head]
        if not head_rows:
            problem(DamageKind.HEAD_MISSING, f"head {head.hex()[:16]}… names no row")
        else:
            if head_seq not in head_rows:
                problem(
                    DamageKind.HEAD_SEQ_MISMATCH, f"head row has seq {head_rows[0]}, not {head_seq}"
                )
            if rows[-1][0] != head_rows[-1]:
                problem(
                    DamageKind.ROWS_AFTER_HEAD,
                    f"head is seq {head_rows[-1]}, last row {rows[-1][0]}",
                )
    if rows and rows[0][3] not in GENESIS_KINDS:
        problem(DamageKind.NO_GENESIS, f"the first row (seq {rows[0][0]}) is a {rows[0][3]}")
    for before, row in itertools.pairwise(rows):
        seq, _digest, prev, kind, epoch, tick, gap = row
        if not gap:
            if prev != before[1]:
                problem(
                    DamageKind.BROKEN_LINK, f"seq {seq}: prev is not the digest of the row before"
                )
        else:
            why = gap_problem((before[3], before[4], before[5]), (kind, epoch, tick))
            if why is not None:
                problem(DamageKind.BAD_GAP, f"seq {seq}: {why}")
    blobs = conn.execute(
        "SELECT seq, digest, CAST(blob AS BLOB) FROM lineage WHERE agent = ? ORDER BY seq DESC "
        "LIMIT ?",
        (agent, TAIL_ROWS),
    ).fetchall()
    blobs += conn.execute(
        f"SELECT seq, digest, CAST(blob AS BLOB) FROM lineage WHERE agent = ? "
        f"AND kind IN ({CUSTODY_KINDS_SQL})",
        (agent,),
    ).fetchall()
    if rows:
        blobs += conn.execute(
            "SELECT seq, digest, CAST(blob AS BLOB) FROM lineage WHERE agent = ? AND seq = ?",
            (agent, rows[0][0]),
        ).fetchall()
    for seq, (digest, blob) in sorted({seq: (d, b) for seq, d, b in blobs}.items()):
        if _sha256(blob) != digest:
            problem(DamageKind.DIGEST_MISMATCH, f"seq {seq}: digest is not sha256(blob)")
    return out


def _one_per_kind(problems: list[IntegrityProblem]) -> list[IntegrityProblem]:
    """One problem per kind is enough to name the damage."""
    seen: set[DamageKind] = set()
    unique = []
    for p in problems:
        if p.kind not in seen:
            seen.add(p.kind)
            unique.append(p)
    return unique
