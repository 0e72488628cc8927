"""The durable store: one SQLite file, one transaction per ``apply``.

The store is synchronous and not thread-safe by itself: the caller (the group committer)
serialises every call. All chain and fence rules are checked in Python against a view of the
committed state *before* the transaction starts, so a rejected batch never touches the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from igor_p2p.authority.states import AuthorityState
from igor_p2p.store import integrity, schema
from igor_p2p.store.errors import (
    ChainBreak,
    FencedOff,
    HeadMismatch,
    InvalidOp,
    NotDiscardable,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreIOError,
    UnknownAgent,
)
from igor_p2p.store.ops import (
    AppendEntries,
    DeleteLineage,
    MarkRecoveryRequired,
    Op,
    PutAuthority,
    PutManifest,
    PutModule,
    PutTombstone,
    RaiseFence,
)
from igor_p2p.store.records import (
    AuthorityRecord,
    DamageKind,
    IntegrityProblem,
    LineageRow,
    Tombstone,
)

DB_FILENAME = "igor.db"
"""The store's file name inside DATA_DIR."""

DIGEST_SIZE = 32

_Tip = tuple[int, bytes] | None
"""(seq, digest) of an agent's last lineage row, or None when it has no rows."""

_AUTH_COLUMNS = (
    "agent, state, epoch, owner, head, head_seq, wasm_hash, manifest_hash, reason, peer, "
    "migration_id, confirmed, updated_ns, context"
)
_SQL_INSERT_LINEAGE = (
    "INSERT INTO lineage (agent, seq, digest, prev, kind, epoch, tick, blob) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_PUT_AUTHORITY = (
    f"INSERT OR REPLACE INTO authority ({_AUTH_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_SQL_MARK = "UPDATE authority SET state = ?, reason = ?, updated_ns = ? WHERE agent = ?"
_SQL_SYNC_HEAD = "UPDATE authority SET head = ?, head_seq = ? WHERE agent = ?"
_SQL_RAISE_FENCE = (
    "INSERT INTO fence (agent, epoch, evidence) VALUES (?, ?, ?) ON CONFLICT (agent) "
    "DO UPDATE SET epoch = excluded.epoch, evidence = excluded.evidence "
    "WHERE excluded.epoch > fence.epoch"
)
_SQL_PUT_TOMBSTONE = (
    "INSERT INTO tombstone (agent, epoch, peer) VALUES (?, ?, ?) ON CONFLICT (agent) "
    "DO UPDATE SET epoch = excluded.epoch, peer = excluded.peer "
    "WHERE excluded.epoch >= tombstone.epoch"
)


class _DigestFilter:
    """A Bloom filter over the digests of one agent's committed lineage rows.

    The schema has no index on digests (keeping one costs a random index page per appended row),
    so "a digest already in the agent's chain is refused" is checked here: a miss proves the
    digest is new; a hit is confirmed against the table. Digests are SHA-256 outputs, so four
    disjoint 32-bit slices of them are the filter's hash functions. 16 bits per row (about 0.2%
    false hits); the filter is rebuilt from the table, twice as large, when it fills up.
    """

    __slots__ = ("bits", "capacity", "count", "mask")

    BITS_PER_ROW = 16
    MIN_CAPACITY = 1024

    def __init__(self, capacity: int) -> None:
        capacity = max(self.MIN_CAPACITY, capacity)
        size = 1 << (capacity * self.BITS_PER_ROW - 1).bit_length()
        self.bits = bytearray(size // 8)
        self.mask = size - 1
        self.capacity = capacity
        self.count = 0

    def _positions(self, digest: bytes) -> tuple[int, int, int, int]:
        mask = self.mask
        x = int.from_bytes(digest[:16], "little")
        return (x & mask, (x >> 32) & mask, (x >> 64) & mask, (x >> 96) & mask)

    def add(self, digest: bytes) -> None:
        bits = self.bits
        for p in self._positions(digest):
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def may_contain(self, digest: bytes) -> bool:
        bits = self.bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(digest))

    def full(self) -> bool:
        return self.count >= self.capacity


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise InvalidOp(what)


def _is_digest(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == DIGEST_SIZE


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _record_row(r: AuthorityRecord) -> tuple[object, ...]:
    return (
        r.agent,
        r.state.value,
        r.epoch,
        r.owner,
        r.head,
        r.head_seq,
        r.wasm_hash,
        r.manifest_hash,
        r.reason,
        r.peer,
        r.migration_id,
        int(r.confirmed),
        r.updated_ns,
        r.context,
    )


def _row_record(row: Sequence[object]) -> AuthorityRecord:
    return AuthorityRecord(
        agent=row[0],  # type: ignore[arg-type]
        state=AuthorityState(row[1]),
        epoch=row[2],  # type: ignore[arg-type]
        owner=row[3],  # type: ignore[arg-type]
        head=row[4],  # type: ignore[arg-type]
        head_seq=row[5],  # type: ignore[arg-type]
        wasm_hash=row[6],  # type: ignore[arg-type]
        manifest_hash=row[7],  # type: ignore[arg-type]
        reason=row[8],  # type: ignore[arg-type]
        peer=row[9],  # type: ignore[arg-type]
        migration_id=row[10],  # type: ignore[arg-type]
        confirmed=bool(row[11]),
        updated_ns=row[12],  # type: ignore[arg-type]
        context=row[13],  # type: ignore[arg-type]
    )


def _validate_record(r: AuthorityRecord) -> None:
    _require(isinstance(r, AuthorityRecord), "PutAuthority needs an AuthorityRecord")
    _require(isinstance(r.agent, str) and r.agent != "", "agent must be a non-empty str")
    _require(isinstance(r.state, AuthorityState), "state must be an AuthorityState")
    _require(_is_int(r.epoch) and r.epoch >= 0, "epoch must be an int ≥ 0")
    _require(isinstance(r.owner, bytes), "owner must be bytes")
    _require(r.head is None or _is_digest(r.head), "head must be None or 32 bytes")
    _require(_is_int(r.head_seq) and r.head_seq >= -1, "head_seq must be an int ≥ -1")
    _require(isinstance(r.wasm_hash, bytes), "wasm_hash must be bytes")
    _require(isinstance(r.manifest_hash, bytes), "manifest_hash must be bytes")
    _require(isinstance(r.reason, str), "reason must be a str")
    _require(r.peer is None or isinstance(r.peer, str), "peer must be None or str")
    _require(
        r.migration_id is None or isinstance(r.migration_id, bytes),
        "migration_id must be None or bytes",
    )
    _require(isinstance(r.confirmed, bool), "confirmed must be a bool")
    _require(_is_int(r.updated_ns), "updated_ns must be an int")
    _require(r.context is None or isinstance(r.context, bytes), "context must be bytes or None")


@dataclass
class _Plan:
    """The validated net effect of one op sequence, executed as one transaction."""

    tips: dict[str, _Tip] = field(default_factory=dict)
    fences: dict[str, tuple[int, str]] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    rows: dict[str, list[tuple[object, ...]]] = field(default_factory=dict)
    authority: dict[str, AuthorityRecord] = field(default_factory=dict)
    marks: dict[str, tuple[str, int]] = field(default_factory=dict)
    tombstones: dict[str, tuple[int, str]] = field(default_factory=dict)
    modules: dict[bytes, bytes] = field(default_factory=dict)
    manifests: dict[bytes, bytes] = field(default_factory=dict)
    head_put: set[str] = field(default_factory=set)
    """Agents whose last change in the sequence is a PutAuthority naming the final tip: the
    put record already carries head/head_seq, so the head sync UPDATE is skipped for them."""

    def empty(self) -> bool:
        return not (
            self.tips
            or self.fences
            or self.deletes
            or self.authority
            or self.marks
            or self.tombstones
            or self.modules
            or self.manifests
        )


class Store:
    """Igor-P2P's durable local state in one SQLite file (see docs/store.md)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._tips: dict[str, _Tip] = {}
        self._fences: dict[str, int] = {}
        self._digests: dict[str, _DigestFilter] = {}
        """Per agent: a filter over its committed digests (loaded on its first append)."""
        self._transactions = 0
        self.problems_at_open: list[IntegrityProblem] = []
        """What the integrity check found when the store was opened."""

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path, *, check_on_open: bool = True) -> Store:
        """Open (creating if needed) the database file at ``path``.

        With ``check_on_open`` the integrity check runs; page-level damage raises
        :class:`StoreCorrupt`, and every damaged agent is put into RECOVERY_REQUIRED
        (unless it already is). The problems are kept in ``problems_at_open``.
        """
        path = Path(path)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreIOError(f"cannot open {path}: {e}") from e
        try:
            schema.configure(conn)
            schema.ensure(conn)
        except StoreError:
            conn.close()
            raise
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreCorrupt(f"{path} is not a usable SQLite database: {e}") from e
        store = cls(conn, path)
        if check_on_open:
            try:
                store._check_on_open()
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def open_data_dir(cls, data_dir: Path, *, check_on_open: bool = True) -> Store:
        """Open ``data_dir/igor.db``."""
        return cls.open(Path(data_dir) / DB_FILENAME, check_on_open=check_on_open)

    def _check_on_open(self) -> None:
        problems = self.check_integrity()
        self.problems_at_open = problems
        file_damage = [p for p in problems if p.kind is DamageKind.FILE]
        if file_damage:
            raise StoreCorrupt(file_damage[0].reason)
        reasons: dict[str, list[str]] = {}
        for p in problems:
            reasons.setdefault(p.agent, []).append(f"{p.kind.value}: {p.reason}")
        marks: list[Op] = []
        for agent, why in sorted(reasons.items()):
            record = self.authority(agent)
            if record is not None and record.state is not AuthorityState.RECOVERY_REQUIRED:
                marks.append(MarkRecoveryRequired(agent, "integrity check: " + "; ".join(why)))
        if marks:
            self.apply(marks)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    @property
    def transactions_committed(self) -> int:
        """How many write transactions this Store object has committed."""
        return self._transactions

    # ------------------------------------------------------------------ writes

    def apply(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` in ONE durable transaction; on any error nothing changes."""
        plan = self._plan(ops)
        if plan.empty():
            return
        self._execute(plan)
        self._transactions += 1
        self._tips.update(plan.tips)
        for agent, (epoch, _) in plan.fences.items():
            self._fences[agent] = max(epoch, self._fences.get(agent, 0))
        for agent in plan.deletes:
            self._digests.pop(agent, None)
        for agent, rows in plan.rows.items():
            known = self._digests.get(agent)
            if known is None:
                continue  # loaded from the table on the agent's next append
            if known.count + len(rows) > known.capacity:
                del self._digests[agent]  # rebuilt, larger, on the next append
                continue
            for row in rows:
                known.add(row[2])  # type: ignore[arg-type]

    def mark_recovery_required(self, agent: str, reason: str) -> None:
        """Put ``agent`` (which must have an authority record) into RECOVERY_REQUIRED."""
        self.apply([MarkRecoveryRequired(agent, reason)])

    def _tip(self, plan: _Plan, agent: str) -> _Tip:
        if agent in plan.tips:
            return plan.tips[agent]
        if agent not in self._tips:
            row = self._conn.execute(
                "SELECT seq, digest FROM lineage WHERE agent = ? ORDER BY seq DESC LIMIT 1",
                (agent,),
            ).fetchone()
            self._tips[agent] = (row[0], row[1]) if row is not None else None
        return self._tips[agent]

    def _known_digests(self, agent: str) -> _DigestFilter:
        """The filter over ``agent``'s committed digests (built from the table when missing)."""
        known = self._digests.get(agent)
        if known is None:
            rows = self._conn.execute(
                "SELECT digest FROM lineage WHERE agent = ?", (agent,)
            ).fetchall()
            known = _DigestFilter(2 * len(rows))
            for (digest,) in rows:
                if isinstance(digest, bytes):
                    known.add(digest)
            self._digests[agent] = known
        return known

    def _digest_committed(self, agent: str, digest: bytes) -> bool:
        """Whether ``agent``'s committed chain already holds a row with ``digest``."""
        if not self._known_digests(agent).may_contain(digest):
            return False
        row = self._conn.execute(
            "SELECT 1 FROM lineage WHERE agent = ? AND digest = ? LIMIT 1", (agent, digest)
        ).fetchone()
        return row is not None

    def _fence(self, plan: _Plan, agent: str) -> int:
        if agent in plan.fences:
            return plan.fences[agent][0]
        if agent not in self._fences:
            self._fences[agent] = self._read_fence(agent)
        return self._fences[agent]

    def _record_state(self, plan: _Plan, agent: str) -> AuthorityState | None:
        if agent in plan.authority:
            return plan.authority[agent].state
        if agent in plan.marks:
            return AuthorityState.RECOVERY_REQUIRED
        row = self._conn.execute("SELECT state FROM authority WHERE agent = ?", (agent,)).fetchone()
        return AuthorityState(row[0]) if row is not None else None

    def _plan(self, ops: Sequence[Op]) -> _Plan:
        try:
            return self._plan_unchecked(ops)
        except sqlite3.Error as e:
            raise StoreIOError(f"reading for validation failed: {e}") from e

    def _plan_unchecked(self, ops: Sequence[Op]) -> _Plan:
        plan = _Plan()
        sha256 = hashlib.sha256
        for op in ops:
            if isinstance(op, AppendEntries):
                agent = op.agent
                _require(isinstance(agent, str) and agent != "", "agent must be a non-empty str")
                if not op.entries:
                    continue
                tip = self._tip(plan, agent)
                seq, want_prev = (0, None) if tip is None else (tip[0] + 1, tip[1])
                rows = plan.rows.setdefault(agent, [])
                seen = {r[2] for r in rows}
                # Rows deleted earlier in this sequence do not count; otherwise the committed
                # chain (when the agent has one) must not hold the digest either.
                check_committed = tip is not None and agent not in plan.deletes
                for e in op.entries:
                    blob = e.blob
                    _require(isinstance(blob, bytes), "entry blob must be bytes")
                    _require(_is_digest(e.prev), "entry prev must be 32 bytes")
                    _require(isinstance(e.kind, str), "entry kind must be a str")
                    _require(_is_int(e.epoch) and _is_int(e.tick), "epoch and tick must be ints")
                    digest = sha256(blob).digest()
                    if digest != e.digest:
                        raise ChainBreak(f"{agent} seq {seq}: digest is not sha256(blob)")
                    if want_prev is not None and e.prev != want_prev:
                        raise ChainBreak(f"{agent} seq {seq}: prev does not name the head")
                    if digest in seen or (
                        check_committed and self._digest_committed(agent, digest)
                    ):
                        raise ChainBreak(f"{agent} seq {seq}: digest already in the chain")
                    seen.add(digest)
                    rows.append((agent, seq, digest, e.prev, e.kind, e.epoch, e.tick, blob))
                    want_prev = digest
                    seq += 1
                plan.tips[agent] = (seq - 1, want_prev)  # type: ignore[assignment]
                plan.head_put.discard(agent)
            elif isinstance(op, PutAuthority):
                r = op.record
                _validate_record(r)
                fence = self._fence(plan, r.agent)
                if r.epoch < fence:
                    raise FencedOff(f"{r.agent}: epoch {r.epoch} is below fence {fence}")
                tip = self._tip(plan, r.agent)
                if r.head is None:
                    if tip is not None or r.head_seq != -1:
                        raise HeadMismatch(f"{r.agent}: head None but the lineage has rows")
                elif tip != (r.head_seq, r.head):
                    raise HeadMismatch(f"{r.agent}: head/head_seq is not the last lineage row")
                plan.authority[r.agent] = r
                plan.marks.pop(r.agent, None)
                plan.head_put.add(r.agent)
                if r.epoch > fence:
                    plan.fences[r.agent] = (r.epoch, f"authority record epoch {r.epoch}")
            elif isinstance(op, RaiseFence):
                _require(isinstance(op.agent, str) and op.agent != "", "agent must be a str")
                _require(_is_int(op.epoch) and op.epoch >= 0, "fence epoch must be an int ≥ 0")
                _require(isinstance(op.evidence, str), "evidence must be a str")
                if op.epoch > self._fence(plan, op.agent):
                    plan.fences[op.agent] = (op.epoch, op.evidence)
            elif isinstance(op, PutModule):
                _require(isinstance(op.wasm, bytes), "wasm must be bytes")
                plan.modules[sha256(op.wasm).digest()] = op.wasm
            elif isinstance(op, PutManifest):
                _require(isinstance(op.data, bytes), "manifest must be bytes")
                plan.manifests[sha256(op.data).digest()] = op.data
            elif isinstance(op, PutTombstone):
                _require(isinstance(op.agent, str) and op.agent != "", "agent must be a str")
                _require(_is_int(op.epoch), "tombstone epoch must be an int")
                _require(isinstance(op.peer, str), "tombstone peer must be a str")
                old = plan.tombstones.get(op.agent)
                if old is None or op.epoch >= old[0]:
                    plan.tombstones[op.agent] = (op.epoch, op.peer)
            elif isinstance(op, DeleteLineage):
                state = self._record_state(plan, op.agent)
                if state not in (None, AuthorityState.HANDOFF_PENDING):
                    raise NotDiscardable(f"{op.agent} is {state}, not an aborted HANDOFF_PENDING")
                plan.rows.pop(op.agent, None)
                if op.agent not in plan.deletes:
                    plan.deletes.append(op.agent)
                plan.tips[op.agent] = None
                plan.head_put.discard(op.agent)
            elif isinstance(op, MarkRecoveryRequired):
                _require(isinstance(op.reason, str), "reason must be a str")
                now = time.time_ns()
                if op.agent in plan.authority:
                    plan.authority[op.agent] = replace(
                        plan.authority[op.agent],
                        state=AuthorityState.RECOVERY_REQUIRED,
                        reason=op.reason,
                        updated_ns=now,
                    )
                elif self._record_state(plan, op.agent) is None:
                    raise UnknownAgent(f"{op.agent} has no authority record")
                else:
                    plan.marks[op.agent] = (op.reason, now)
            else:
                raise InvalidOp(f"not a store op: {type(op).__name__}")
        return plan

    def _execute(self, plan: _Plan) -> None:
        conn = self._conn
        step = "begin"
        try:
            conn.execute("BEGIN IMMEDIATE")
            step = "delete lineage"
            for agent in plan.deletes:
                conn.execute("DELETE FROM lineage WHERE agent = ?", (agent,))
            step = "append lineage"
            if plan.rows:
                conn.executemany(_SQL_INSERT_LINEAGE, _chain(plan.rows.values()))
            step = "put authority"
            if plan.authority:
                conn.executemany(_SQL_PUT_AUTHORITY, map(_record_row, plan.authority.values()))
            if plan.marks:
                conn.executemany(
                    _SQL_MARK,
                    (
                        (AuthorityState.RECOVERY_REQUIRED.value, reason, now, agent)
                        for agent, (reason, now) in plan.marks.items()
                    ),
                )
            if plan.tips:
                head_put = plan.head_put
                conn.executemany(
                    _SQL_SYNC_HEAD,
                    (
                        (None, -1, agent) if tip is None else (tip[1], tip[0], agent)
                        for agent, tip in plan.tips.items()
                        if agent not in head_put
                    ),
                )
            step = "other"
            if plan.fences:
                conn.executemany(
                    _SQL_RAISE_FENCE, ((a, e, ev) for a, (e, ev) in plan.fences.items())
                )
            if plan.tombstones:
                conn.executemany(
                    _SQL_PUT_TOMBSTONE, ((a, e, p) for a, (e, p) in plan.tombstones.items())
                )
            if plan.modules:
                conn.executemany(
                    "INSERT OR IGNORE INTO module (hash, wasm) VALUES (?, ?)", plan.modules.items()
                )
            if plan.manifests:
                conn.executemany(
                    "INSERT OR IGNORE INTO manifest (hash, data) VALUES (?, ?)",
                    plan.manifests.items(),
                )
            step = "commit"
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.IntegrityError) and step == "append lineage":
                raise ChainBreak(f"lineage row rejected by the database: {e}") from e
            if isinstance(e, sqlite3.IntegrityError):
                raise StoreError(f"transaction rejected at {step}: {e}") from e
            if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise StoreFull(f"disk full at {step}; nothing was written: {e}") from e
            if isinstance(e, sqlite3.Error):
                raise StoreIOError(f"transaction failed at {step}: {e}") from e
            raise

    # ------------------------------------------------------------------ reads

    def _read_fence(self, agent: str) -> int:
        row = self._conn.execute("SELECT epoch FROM fence WHERE agent = ?", (agent,)).fetchone()
        return row[0] if row is not None else 0

    def authority(self, agent: str) -> AuthorityRecord | None:
        row = self._conn.execute(
            f"SELECT {_AUTH_COLUMNS} FROM authority WHERE agent = ?", (agent,)
        ).fetchone()
        return _row_record(row) if row is not None else None

    def authorities(self) -> list[AuthorityRecord]:
        rows = self._conn.execute(f"SELECT {_AUTH_COLUMNS} FROM authority ORDER BY agent")
        return [_row_record(r) for r in rows]

    def agents_with_state(self, *states: AuthorityState) -> list[str]:
        """Agents (sorted) whose authority record is in one of ``states``."""
        if not states:
            return []
        marks = ",".join("?" * len(states))
        rows = self._conn.execute(
            f"SELECT agent FROM authority WHERE state IN ({marks}) ORDER BY agent",
            [AuthorityState(s).value for s in states],
        )
        return [r[0] for r in rows]

    def lineage(self, agent: str, since_seq: int = 0) -> list[bytes]:
        """The agent's blobs from ``since_seq`` on, in seq order."""
        rows = self._conn.execute(
            "SELECT blob FROM lineage WHERE agent = ? AND seq >= ? ORDER BY seq", (agent, since_seq)
        )
        return [r[0] for r in rows]

    def lineage_rows(self, agent: str, since_seq: int = 0) -> list[LineageRow]:
        """The agent's rows from ``since_seq`` on, in seq order."""
        rows = self._conn.execute(
            "SELECT agent, seq, digest, prev, kind, epoch, tick, blob FROM lineage "
            "WHERE agent = ? AND seq >= ? ORDER BY seq",
            (agent, since_seq),
        )
        return [LineageRow(*r) for r in rows]

    def lineage_index(self, agent: str) -> list[LineageRow]:
        """The agent's rows in seq order with every column but the blob (``blob`` is b"")."""
        rows = self._conn.execute(
            "SELECT agent, seq, digest, prev, kind, epoch, tick FROM lineage "
            "WHERE agent = ? ORDER BY seq",
            (agent,),
        )
        return [LineageRow(*r, b"") for r in rows]

    def lineage_rows_of_kind(self, agent: str, kind: str) -> list[LineageRow]:
        """The agent's rows whose ``kind`` column is ``kind`` (e.g. ``TRANSFER``), in seq order."""
        rows = self._conn.execute(
            "SELECT agent, seq, digest, prev, kind, epoch, tick, blob FROM lineage "
            "WHERE agent = ? AND kind = ? ORDER BY seq",
            (agent, kind),
        )
        return [LineageRow(*r) for r in rows]

    def lineage_bytes(self, agent: str) -> int:
        """Bytes of the agent's stored lineage entries (what its storage cap counts)."""
        row = self._conn.execute(
            "SELECT COALESCE(SUM(length(blob)), 0) FROM lineage WHERE agent = ?", (agent,)
        ).fetchone()
        return int(row[0])

    def head_blob(self, agent: str) -> bytes | None:
        """The blob the authority record's head names; without a record, the last row's blob."""
        record = self.authority(agent)
        if record is not None:
            if record.head is None:
                return None
            row = self._conn.execute(
                "SELECT blob FROM lineage WHERE agent = ? AND seq = ? AND digest = ?",
                (agent, record.head_seq, record.head),
            ).fetchone()
            if row is None:  # damaged record: look for the digest anywhere in the chain
                row = self._conn.execute(
                    "SELECT blob FROM lineage WHERE agent = ? AND digest = ?", (agent, record.head)
                ).fetchone()
        else:
            row = self._conn.execute(
                "SELECT blob FROM lineage WHERE agent = ? ORDER BY seq DESC LIMIT 1", (agent,)
            ).fetchone()
        return row[0] if row is not None else None

    def fence(self, agent: str) -> int:
        """The highest epoch ever seen for ``agent``; 0 when never seen."""
        return self._read_fence(agent)

    def fence_evidence(self, agent: str) -> str | None:
        row = self._conn.execute("SELECT evidence FROM fence WHERE agent = ?", (agent,)).fetchone()
        return row[0] if row is not None else None

    def module(self, wasm_hash: bytes) -> bytes | None:
        row = self._conn.execute("SELECT wasm FROM module WHERE hash = ?", (wasm_hash,)).fetchone()
        return row[0] if row is not None else None

    def manifest(self, manifest_hash: bytes) -> bytes | None:
        row = self._conn.execute(
            "SELECT data FROM manifest WHERE hash = ?", (manifest_hash,)
        ).fetchone()
        return row[0] if row is not None else None

    def tombstone(self, agent: str) -> Tombstone | None:
        row = self._conn.execute(
            "SELECT agent, epoch, peer FROM tombstone WHERE agent = ?", (agent,)
        ).fetchone()
        return Tombstone(*row) if row is not None else None

    # ------------------------------------------------------------------ integrity

    def check_integrity(self) -> list[IntegrityProblem]:
        """PRAGMA quick_check plus the per-agent chain checks (see docs/store.md)."""
        try:
            return integrity.check(self._conn)
        except sqlite3.DatabaseError as e:
            return [IntegrityProblem("", f"reading failed: {e}", DamageKind.FILE)]


def _chain(groups: Iterable[list[tuple[object, ...]]]) -> Iterable[tuple[object, ...]]:
    for group in groups:
        yield from group
