"""The durable store: one SQLite file, one transaction per ``apply``.

The store is synchronous and not thread-safe by itself: the caller (the group committer)
serialises every call. Every rule (the sink fence, the chain, where gaps may be) is checked in
Python against a view of the committed state plus the earlier ops of the same sequence *before*
the transaction starts, so a refused batch never touches the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import msgpack

from igor_p2p.authority.custody import EpochStart, InvalidCustody, genesis_start, next_start
from igor_p2p.authority.record import AuthorityRecord, columns, decode_record, encode_record
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.lineage._codec import CorruptEntry
from igor_p2p.lineage.cert import WitnessCert
from igor_p2p.lineage.custody import ForcedRecovery, TransferRecord
from igor_p2p.lineage.effect import EffectRecord
from igor_p2p.lineage.entries import LineageEntry, decode_entry
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.lineage.export import ExportRecord
from igor_p2p.store import integrity, schema
from igor_p2p.store.codec import decode_witness, encode_witness
from igor_p2p.store.errors import (
    ChainBreak,
    InvalidOp,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreIOError,
    StoreRefused,
    UnknownAgent,
)
from igor_p2p.store.gaps import gap_problem
from igor_p2p.store.ops import (
    AppendEntries,
    AppendTicks,
    Compaction,
    CompactLineage,
    DiscardCopy,
    NewEntry,
    Op,
    PutManifest,
    PutModule,
    PutRecord,
    PutWitness,
    PutWitnessChain,
)
from igor_p2p.store.records import DamageKind, IntegrityProblem, LineageRow
from igor_p2p.store.schema import (
    CERT_KIND,
    CHECKPOINT_KINDS,
    CHECKPOINT_KINDS_SQL,
    CUSTODY_KINDS,
    CUSTODY_KINDS_SQL,
    GENESIS_KINDS,
    KINDS,
    RECORD_KINDS,
)

DB_FILENAME = "igor.db"
"""The store's file name inside DATA_DIR."""

DIGEST_SIZE = 32
TICK_KINDS = ("TICK", "HANDOFF", "FINAL", "EFFECT", "INPUTS")
"""Kinds the runner commits with :class:`AppendTicks`: its checkpoints, effect and tick-input
records."""
_OWNER = AuthorityState.ACTIVE_OWNER.value
_PENDING = AuthorityState.HANDOFF_PENDING.value

CACHED_AGENTS = 4096
"""Agents whose committed view (head, state, …) the store keeps in memory (LRU)."""
CACHED_CUSTODY = 1024
"""Agents whose decoded custody the store keeps in memory (LRU)."""
CACHED_DIGEST_FILTERS = 256
"""Agents whose digest filter (for dedupe) the store keeps in memory (LRU)."""

_SQL_INSERT_LINEAGE = (
    "INSERT INTO lineage (agent, seq, digest, prev, kind, epoch, tick, gap, blob) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_AUTH_COLUMNS = (
    "agent, record, state, epoch, fence, reason, peer, head, head_seq, wasm_hash, "
    "manifest_hash, copy_start, compacted_to"
)
_SQL_PUT_RECORD = (
    f"INSERT INTO authority ({_AUTH_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (agent) DO UPDATE SET record = excluded.record, state = excluded.state, "
    "epoch = excluded.epoch, fence = excluded.fence, reason = excluded.reason, "
    "peer = excluded.peer, head = excluded.head, head_seq = excluded.head_seq, "
    "wasm_hash = excluded.wasm_hash, manifest_hash = excluded.manifest_hash, "
    "copy_start = excluded.copy_start, compacted_to = excluded.compacted_to"
)
_SQL_SYNC = (
    "UPDATE authority SET head = ?, head_seq = ?, wasm_hash = ?, manifest_hash = ?, "
    "copy_start = ?, compacted_to = ? WHERE agent = ?"
)
_SQL_LOAD_VIEW = (
    "SELECT a.state, a.epoch, a.head, a.head_seq, a.copy_start, a.wasm_hash, a.manifest_hash, "
    "a.compacted_to, l.kind, l.epoch, l.tick FROM authority a "
    "LEFT JOIN lineage l ON l.agent = a.agent AND l.seq = a.head_seq WHERE a.agent = ?"
)
_SQL_DROPPABLE = (
    "SELECT seq, next_seq FROM ("
    " SELECT seq, kind, epoch, LEAD(seq) OVER w AS next_seq, LEAD(kind) OVER w AS next_kind,"
    " LEAD(epoch) OVER w AS next_epoch FROM lineage WHERE agent = ? AND seq >= ?"
    " WINDOW w AS (ORDER BY seq)"
    ") WHERE seq < ? AND kind IN ('TICK', 'INPUTS')"
    " AND next_kind IN ('TICK', 'HANDOFF', 'FINAL', 'INPUTS')"
    " AND next_epoch = epoch ORDER BY seq LIMIT ?"
)

K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A bounded map that forgets the least recently used key."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)

    def pop(self, key: K) -> None:
        self.items.pop(key, None)


class _DigestFilter:
    """A Bloom filter over the digests of one agent's committed lineage rows.

    The schema has no index on digests (keeping one costs a random index page per appended row),
    so "an entry already in the chain" is checked here: a miss proves the digest is new; a hit is
    confirmed against the table. Digests are SHA-256 outputs, so four disjoint 32-bit slices of
    them are the filter's hash functions. 16 bits per row (about 0.2% false hits); the filter is
    rebuilt from the table, twice as large, when it fills up. Compacted rows stay in the filter
    (a hit on one is confirmed, negatively, by the table).
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


@dataclass
class _View:
    """What the store knows of one agent's committed state (cached, updated on commit)."""

    exists: bool = False
    """The agent has an authority record."""
    state: str | None = None
    epoch: int = 0
    head: bytes | None = None
    head_seq: int = -1
    tip_kind: str | None = None
    tip_epoch: int = 0
    tip_tick: int = 0
    copy_start: int | None = None
    wasm_hash: bytes | None = None
    manifest_hash: bytes | None = None
    compacted_to: int = 0
    """Rows below this seq were already considered by compaction."""

    def copy(self) -> _View:
        """A shallow copy (what a plan changes; ``dataclasses.replace`` costs 10× more)."""
        view = _View.__new__(_View)
        view.__dict__.update(self.__dict__)
        return view


@dataclass
class _AgentPlan:
    """One agent's part of a transaction."""

    view: _View
    had_rows: bool
    """The agent had committed rows when the plan started."""
    record: AuthorityRecord | None = None
    discard_from: int | None = None
    rows: list[tuple[object, ...]] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    first_new_seq: int | None = None
    appends: bool = False
    """An AppendEntries or DiscardCopy for the agent is in the plan (compaction waits)."""
    custody: bool = False
    """Custody rows are added or removed."""
    drop: list[int] = field(default_factory=list)
    mark_gap: list[int] = field(default_factory=list)
    compacting: bool = False


@dataclass
class _Plan:
    """The validated net effect of one op sequence, executed as one transaction."""

    results: list[object]
    agents: dict[str, _AgentPlan] = field(default_factory=dict)
    witnesses: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    chain_rows: list[tuple[object, ...]] = field(default_factory=list)
    chain_tips: dict[str, int | None] = field(default_factory=dict)
    modules: dict[bytes, bytes] = field(default_factory=dict)
    manifests: dict[bytes, bytes] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (
            self.agents or self.witnesses or self.chain_rows or self.modules or self.manifests
        )


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise InvalidOp(what)


def _is_digest(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == DIGEST_SIZE


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_agent(agent: object) -> None:
    _require(isinstance(agent, str) and agent != "", "agent must be a non-empty str")


def _check_entry(e: object) -> None:
    _require(isinstance(e, NewEntry), "an entry must be bytes or a NewEntry")
    assert isinstance(e, NewEntry)
    _require(isinstance(e.blob, bytes), "entry blob must be bytes")
    _require(_is_digest(e.digest) and _is_digest(e.prev), "entry digest and prev are 32 bytes")
    _require(e.kind in KINDS, f"entry kind must be one of {KINDS}")
    _require(_is_int(e.epoch) and _is_int(e.tick), "epoch and tick must be ints")


def _entry_row(entry: LineageEntry, blob: bytes) -> NewEntry:
    """The row of a decoded entry (its digest is sha256 of ``blob``: decoding checked that)."""
    if isinstance(entry, Checkpoint):
        return NewEntry(entry.digest(), entry.prev, entry.kind.name, entry.epoch, entry.tick, blob)
    if isinstance(entry, TransferRecord):
        return NewEntry(entry.digest(), entry.prev, "TRANSFER", entry.to_epoch, 0, blob)
    if isinstance(entry, ForcedRecovery):
        return NewEntry(entry.digest(), entry.prev, "FORCED", entry.to_epoch, 0, blob)
    if isinstance(entry, EffectRecord):
        return NewEntry(entry.digest(), entry.prev, "EFFECT", entry.epoch, entry.tick, blob)
    if isinstance(entry, ExportRecord):
        return NewEntry(entry.digest(), entry.prev, "EXPORT", entry.epoch, entry.tick, blob)
    if not isinstance(entry, WitnessCert):  # tick inputs
        return NewEntry(entry.digest(), entry.prev, "INPUTS", entry.epoch, 0, blob)  # type: ignore[union-attr]
    return NewEntry(entry.digest(), entry.prev, "CERT", entry.slot, 0, blob)


def read_custody(
    rows: Iterable[tuple[str, bytes]], starts: Sequence[EpochStart] = ()
) -> list[EpochStart]:
    """The epoch starts proved by an agent's custody rows ``(kind, blob)`` in chain order: the
    first genesis, then each record followed by its certificate. Links that do not verify
    (signatures are trusted: they were checked when the entries arrived) are left out. With
    ``starts``, the rows continue that custody (a commit's new rows after the cached ones)."""
    starts = list(starts)
    pending: bytes | None = None
    for kind, blob in rows:
        if kind in GENESIS_KINDS:
            if not starts:
                with contextlib.suppress(CorruptEntry, InvalidCustody):
                    starts.append(genesis_start(Checkpoint.decode(blob), verified=True))
        elif kind in RECORD_KINDS:
            pending = blob
        else:
            if pending is not None and starts:
                with contextlib.suppress(InvalidCustody):
                    starts.append(next_start(starts[-1], pending, blob, verified=True))
            pending = None
    return starts


class Store:
    """Igor-P2P's durable local state in one SQLite file (see docs/store.md)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._views: _Lru[str, _View] = _Lru(CACHED_AGENTS)
        self._custody: _Lru[str, tuple[EpochStart, ...]] = _Lru(CACHED_CUSTODY)
        self._digests: _Lru[str, _DigestFilter] = _Lru(CACHED_DIGEST_FILTERS)
        self._transactions = 0
        self.problems_at_open: list[IntegrityProblem] = []
        """What the integrity check found when the store was opened (nothing is changed: the
        node feeds an integrity failure to the authority gate of each damaged agent)."""

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path, *, check_on_open: bool = True) -> Store:
        """Open (creating if needed) the database file at ``path``.

        With ``check_on_open`` the integrity check runs and its findings are kept in
        ``problems_at_open``; page-level damage raises :class:`StoreCorrupt`. The check only
        reads. A store of an older format raises :class:`SchemaTooOld` (no migration).
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
                store.problems_at_open = store.check_integrity()
                damage = [p for p in store.problems_at_open if p.kind is DamageKind.FILE]
                if damage:
                    raise StoreCorrupt(damage[0].reason)
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def open_data_dir(cls, data_dir: Path, *, check_on_open: bool = True) -> Store:
        """Open ``data_dir/igor.db``."""
        return cls.open(Path(data_dir) / DB_FILENAME, check_on_open=check_on_open)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    @property
    def transactions_committed(self) -> int:
        """How many write transactions this Store object has committed."""
        return self._transactions

    # ------------------------------------------------------------------ writes

    def apply(self, ops: Sequence[Op]) -> list[object]:
        """Apply ``ops`` in ONE durable transaction; on any error nothing changes.

        Returns one result per op (see :mod:`igor_p2p.store.ops`)."""
        try:
            plan = self._plan(ops)
        except sqlite3.Error as e:
            raise StoreIOError(f"reading for validation failed: {e}") from e
        if plan.empty():
            return plan.results
        self._execute(plan)
        self._transactions += 1
        for agent, ap in plan.agents.items():
            self._views.put(agent, ap.view)
            if ap.custody:
                self._extend_cached_custody(agent, ap)
            known = self._digests.get(agent)
            if known is None:
                continue
            if ap.discard_from is not None or known.count + len(ap.rows) > known.capacity:
                self._digests.pop(agent)  # rebuilt from the table on the next dedupe
                continue
            for row in ap.rows:
                known.add(row[2])  # type: ignore[arg-type]
        return plan.results

    def _view(self, agent: str) -> _View:
        view = self._views.get(agent)
        if view is None:
            row = self._conn.execute(_SQL_LOAD_VIEW, (agent,)).fetchone()
            if row is None:
                view = _View()
            else:
                view = _View(
                    exists=True,
                    state=row[0],
                    epoch=row[1],
                    head=row[2],
                    head_seq=row[3],
                    copy_start=row[4],
                    wasm_hash=row[5],
                    manifest_hash=row[6],
                    compacted_to=row[7],
                    tip_kind=row[8],
                    tip_epoch=row[9] or 0,
                    tip_tick=row[10] or 0,
                )
            self._views.put(agent, view)
        return view

    def _agent(self, plan: _Plan, agent: str) -> _AgentPlan:
        ap = plan.agents.get(agent)
        if ap is None:
            committed = self._view(agent)
            ap = plan.agents[agent] = _AgentPlan(committed.copy(), committed.head is not None)
        return ap

    def _known_digests(self, agent: str) -> _DigestFilter:
        known = self._digests.get(agent)
        if known is None:
            rows = self._conn.execute(
                "SELECT digest FROM lineage WHERE agent = ?", (agent,)
            ).fetchall()
            known = _DigestFilter(2 * len(rows))
            for (digest,) in rows:
                if isinstance(digest, bytes):
                    known.add(digest)
            self._digests.put(agent, known)
        return known

    def _held(self, agent: str, ap: _AgentPlan, digest: bytes) -> bool:
        """Whether the agent's chain (committed rows that stay, or rows of this plan) holds
        ``digest``."""
        if digest in ap.seen:
            return True
        if not ap.had_rows or not self._known_digests(agent).may_contain(digest):
            return False
        below = ap.discard_from if ap.discard_from is not None else 1 << 62
        row = self._conn.execute(
            "SELECT 1 FROM lineage WHERE agent = ? AND digest = ? AND seq < ? LIMIT 1",
            (agent, digest, below),
        ).fetchone()
        return row is not None

    def _plan(self, ops: Sequence[Op]) -> _Plan:
        plan = _Plan(results=[None] * len(ops))
        compactions: list[tuple[int, CompactLineage]] = []
        for index, op in enumerate(ops):
            if isinstance(op, AppendTicks):
                self._plan_ticks(plan, op)
            elif isinstance(op, AppendEntries):
                plan.results[index] = self._plan_append(plan, op)
            elif isinstance(op, PutRecord):
                self._plan_record(plan, op)
            elif isinstance(op, DiscardCopy):
                self._plan_discard(plan, op)
            elif isinstance(op, CompactLineage):
                _check_agent(op.agent)
                _require(_is_int(op.keep_last) and op.keep_last >= 1, "keep_last must be ≥ 1")
                _require(_is_int(op.limit) and op.limit >= 1, "limit must be ≥ 1")
                compactions.append((index, op))
            elif isinstance(op, PutWitness):
                _check_agent(op.agent)
                _require(isinstance(op.record, WitnessRecord), "PutWitness needs a WitnessRecord")
                plan.witnesses[op.agent] = (op.record.chosen.epoch, encode_witness(op.record))
            elif isinstance(op, PutWitnessChain):
                self._plan_chain(plan, op)
            elif isinstance(op, PutModule):
                _require(isinstance(op.wasm, bytes), "wasm must be bytes")
                plan.modules[hashlib.sha256(op.wasm).digest()] = op.wasm
            elif isinstance(op, PutManifest):
                _require(isinstance(op.data, bytes), "manifest must be bytes")
                plan.manifests[hashlib.sha256(op.data).digest()] = op.data
            else:
                raise InvalidOp(f"not a store op: {type(op).__name__}")
        # Compaction is planned last, against the committed rows, so that the appends of the
        # same transaction never see a row it drops.
        for index, op in compactions:
            plan.results[index] = self._plan_compaction(plan, op)
        for agent, ap in plan.agents.items():
            if (ap.rows or ap.discard_from is not None) and not ap.view.exists:
                raise UnknownAgent(f"{agent}: lineage rows need an authority record")
            if ap.view.state != _PENDING:
                ap.view.copy_start = None
            elif ap.view.copy_start is None and ap.first_new_seq is not None:
                ap.view.copy_start = ap.first_new_seq
        return plan

    def _plan_record(self, plan: _Plan, op: PutRecord) -> None:
        _check_agent(op.agent)
        _require(isinstance(op.record, AuthorityRecord), "PutRecord needs an AuthorityRecord")
        ap = self._agent(plan, op.agent)
        ap.record = op.record
        ap.view.exists = True
        ap.view.state = op.record.state.value
        ap.view.epoch = op.record.epoch

    def _add_row(self, agent: str, ap: _AgentPlan, e: NewEntry, gap: bool) -> None:
        view = ap.view
        tick = e.tick if e.kind in CHECKPOINT_KINDS else view.tip_tick
        seq = view.head_seq + 1
        ap.rows.append((agent, seq, e.digest, e.prev, e.kind, e.epoch, tick, int(gap), e.blob))
        ap.seen.add(e.digest)
        if ap.first_new_seq is None:
            ap.first_new_seq = seq
        view.head, view.head_seq = e.digest, seq
        view.tip_kind, view.tip_epoch, view.tip_tick = e.kind, e.epoch, tick

    def _plan_ticks(self, plan: _Plan, op: AppendTicks) -> None:
        agent = op.agent
        _check_agent(agent)
        ap = self._agent(plan, agent)
        view = ap.view
        if not view.exists or view.state != _OWNER:
            raise StoreRefused(f"{agent}: not the owner here")
        if view.epoch != op.epoch:
            raise StoreRefused(f"{agent}: owns epoch {view.epoch}, not {op.epoch}")
        sha256 = hashlib.sha256
        for e in op.entries:
            _check_entry(e)
            _require(e.kind in TICK_KINDS, f"AppendTicks takes {TICK_KINDS} checkpoints")
            if e.epoch != op.epoch:
                raise StoreRefused(f"{agent}: a checkpoint of epoch {e.epoch} in epoch {op.epoch}")
            if sha256(e.blob).digest() != e.digest:
                raise ChainBreak(f"{agent}: digest is not sha256(blob)")
            if e.prev != view.head:
                raise StoreRefused(f"{agent}: the checkpoint does not link to the head")
            self._add_row(agent, ap, e, gap=False)

    def _plan_append(self, plan: _Plan, op: AppendEntries) -> list[bytes]:
        agent = op.agent
        _check_agent(agent)
        _require(isinstance(op.dedupe, bool), "dedupe must be a bool")
        if not op.entries:
            return []
        ap = self._agent(plan, agent)
        ap.appends = True
        appended: list[bytes] = []
        for item in op.entries:
            genesis: Checkpoint | None = None
            if isinstance(item, bytes):
                entry = decode_entry(item)  # CorruptEntry (InvalidInput) on bad bytes
                e = _entry_row(entry, item)
                if isinstance(entry, Checkpoint):
                    genesis = entry
            else:
                _check_entry(item)
                e = item
                if hashlib.sha256(e.blob).digest() != e.digest:
                    raise ChainBreak(f"{agent}: digest is not sha256(blob)")
            if self._held(agent, ap, e.digest):
                if op.dedupe:
                    continue
                raise ChainBreak(f"{agent}: entry {e.digest.hex()[:12]} is already in the chain")
            view = ap.view
            if view.head is None and e.kind not in GENESIS_KINDS:
                raise StoreRefused(f"{agent}: a lineage starts with its genesis, not a {e.kind}")
            gap = view.head is not None and e.prev != view.head
            if gap:
                why = gap_problem(
                    (view.tip_kind or "", view.tip_epoch, view.tip_tick), (e.kind, e.epoch, e.tick)
                )
                if why is not None:
                    raise StoreRefused(f"{agent}: {why}")
            if e.kind in CUSTODY_KINDS:
                ap.custody = True
            if e.kind in GENESIS_KINDS and view.wasm_hash is None:
                if genesis is None:
                    genesis = Checkpoint.decode(e.blob)
                view.wasm_hash, view.manifest_hash = genesis.wasm_hash, genesis.manifest_hash
            self._add_row(agent, ap, e, gap)
            appended.append(e.blob)
        return appended

    def _plan_discard(self, plan: _Plan, op: DiscardCopy) -> None:
        agent = op.agent
        _check_agent(agent)
        ap = self._agent(plan, agent)
        if ap.rows:
            raise InvalidOp(f"{agent}: DiscardCopy after an append in the same transaction")
        ap.appends = True
        start = ap.view.copy_start
        if start is None:
            return
        ap.discard_from = start
        ap.custody = True
        row = self._conn.execute(
            "SELECT seq, digest, kind, epoch, tick FROM lineage WHERE agent = ? AND seq < ? "
            "ORDER BY seq DESC LIMIT 1",
            (agent, start),
        ).fetchone()
        view = ap.view
        view.copy_start = None
        view.compacted_to = min(view.compacted_to, start)
        if row is None:
            view.head, view.head_seq, view.tip_kind, view.tip_epoch, view.tip_tick = (
                None, -1, None, 0, 0,
            )  # fmt: skip
            view.wasm_hash = view.manifest_hash = None
        else:
            view.head_seq, view.head, view.tip_kind, view.tip_epoch, view.tip_tick = row

    def _plan_compaction(self, plan: _Plan, op: CompactLineage) -> Compaction:
        agent = op.agent
        current = plan.agents.get(agent)
        if current is not None and (current.appends or current.compacting):
            return Compaction(0, more=True)  # run again after this transaction
        committed = self._view(agent)
        if not committed.exists or committed.head is None:
            return Compaction(0, more=False)
        row = self._conn.execute(
            f"SELECT seq FROM lineage WHERE agent = ? AND kind IN ({CHECKPOINT_KINDS_SQL}) "
            "ORDER BY seq DESC LIMIT 1 OFFSET ?",
            (agent, op.keep_last - 1),
        ).fetchone()
        if row is None:
            return Compaction(0, more=False)
        cutoff: int = row[0]
        if committed.copy_start is not None:
            cutoff = min(cutoff, committed.copy_start - 1)
        start = committed.compacted_to
        if cutoff <= start:
            return Compaction(0, more=False)
        found = self._conn.execute(_SQL_DROPPABLE, (agent, start, cutoff, op.limit)).fetchall()
        drop = [seq for seq, _ in found]
        dropped = set(drop)
        more = len(drop) == op.limit
        ap = self._agent(plan, agent)
        ap.compacting = True
        ap.drop = drop
        ap.mark_gap = sorted({nxt for _, nxt in found} - dropped)
        ap.view.compacted_to = drop[-1] + 1 if more else cutoff
        return Compaction(len(drop), more)

    def _plan_chain(self, plan: _Plan, op: PutWitnessChain) -> None:
        agent = op.agent
        _check_agent(agent)
        if agent in plan.chain_tips:
            tip = plan.chain_tips[agent]
        else:
            tip = self._conn.execute(
                "SELECT max(epoch) FROM witness_chain WHERE agent = ?", (agent,)
            ).fetchone()[0]
        for start in op.starts:
            _require(isinstance(start, EpochStart), "PutWitnessChain takes EpochStarts")
            if tip is not None and start.epoch <= tip:
                continue
            plan.chain_rows.append(
                (
                    agent,
                    start.epoch,
                    start.owner,
                    msgpack.packb(list(start.witnesses), use_bin_type=True),
                    start.digest,
                    int(start.forced),
                    start.record,
                    start.cert,
                    start.genesis,
                )
            )
            tip = start.epoch
        plan.chain_tips[agent] = tip

    def _execute(self, plan: _Plan) -> None:
        conn = self._conn
        step = "begin"
        try:
            conn.execute("BEGIN IMMEDIATE")
            step = "compact lineage"
            for agent, ap in plan.agents.items():
                if ap.drop:
                    conn.executemany(
                        "DELETE FROM lineage WHERE agent = ? AND seq = ?",
                        ((agent, seq) for seq in ap.drop),
                    )
                    conn.executemany(
                        "UPDATE lineage SET gap = 1 WHERE agent = ? AND seq = ?",
                        ((agent, seq) for seq in ap.mark_gap),
                    )
            step = "discard copy"
            for agent, ap in plan.agents.items():
                if ap.discard_from is not None:
                    conn.execute(
                        "DELETE FROM lineage WHERE agent = ? AND seq >= ?",
                        (agent, ap.discard_from),
                    )
            step = "append lineage"
            conn.executemany(
                _SQL_INSERT_LINEAGE, (row for ap in plan.agents.values() for row in ap.rows)
            )
            step = "put authority"
            puts = [(a, ap) for a, ap in plan.agents.items() if ap.record is not None]
            if puts:
                conn.executemany(_SQL_PUT_RECORD, (_record_row(a, ap) for a, ap in puts))
            syncs = [
                (v.head, v.head_seq, v.wasm_hash, v.manifest_hash, v.copy_start, v.compacted_to, a)
                for a, ap in plan.agents.items()
                if ap.record is None and (v := ap.view).exists
            ]
            if syncs:
                conn.executemany(_SQL_SYNC, syncs)
            step = "witness"
            if plan.witnesses:
                conn.executemany(
                    "INSERT OR REPLACE INTO witness (agent, chosen, record) VALUES (?, ?, ?)",
                    ((a, chosen, blob) for a, (chosen, blob) in plan.witnesses.items()),
                )
            if plan.chain_rows:
                conn.executemany(
                    "INSERT INTO witness_chain (agent, epoch, owner, witnesses, digest, forced, "
                    "record, cert, genesis) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    plan.chain_rows,
                )
            step = "modules"
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
            # The cached views may be ahead of the file only if the error came after they were
            # read; they are updated after COMMIT only, so nothing to undo.
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

    def record(self, agent: str) -> AuthorityRecord | None:
        """The agent's authority record (``CorruptRecord`` if it does not decode)."""
        row = self._conn.execute(
            "SELECT record FROM authority WHERE agent = ?", (agent,)
        ).fetchone()
        return decode_record(row[0]) if row is not None else None

    def records(self) -> list[tuple[str, AuthorityRecord]]:
        """Every authority record, by agent."""
        rows = self._conn.execute("SELECT agent, record FROM authority ORDER BY agent")
        return [(agent, decode_record(blob)) for agent, blob in rows]

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

    def head(self, agent: str) -> bytes | None:
        """Digest of the agent's last lineage row."""
        row = self._conn.execute("SELECT head FROM authority WHERE agent = ?", (agent,)).fetchone()
        return row[0] if row is not None else None

    def files(self, agent: str) -> tuple[bytes, bytes] | None:
        """(wasm_hash, manifest_hash) of the agent's genesis, when its lineage has one."""
        row = self._conn.execute(
            "SELECT wasm_hash, manifest_hash FROM authority WHERE agent = ?", (agent,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return row[0], row[1]

    def lineage(self, agent: str, since_seq: int = 0) -> list[bytes]:
        """The agent's blobs from ``since_seq`` on, in chain order (possibly compacted)."""
        rows = self._conn.execute(
            "SELECT blob FROM lineage WHERE agent = ? AND seq >= ? ORDER BY seq", (agent, since_seq)
        )
        return [r[0] for r in rows]

    def lineage_rows(self, agent: str, since_seq: int = 0) -> list[LineageRow]:
        """The agent's rows from ``since_seq`` on, in chain order."""
        rows = self._conn.execute(
            "SELECT agent, seq, digest, prev, kind, epoch, tick, gap, blob FROM lineage "
            "WHERE agent = ? AND seq >= ? ORDER BY seq",
            (agent, since_seq),
        )
        return [LineageRow(a, s, d, p, k, e, t, bool(g), b) for a, s, d, p, k, e, t, g, b in rows]

    def lineage_index(self, agent: str) -> list[LineageRow]:
        """The agent's rows with every column but the blob (``blob`` is b""): cheap on big
        states."""
        rows = self._conn.execute(
            "SELECT agent, seq, digest, prev, kind, epoch, tick, gap FROM lineage "
            "WHERE agent = ? ORDER BY seq",
            (agent,),
        )
        return [LineageRow(a, s, d, p, k, e, t, bool(g), b"") for a, s, d, p, k, e, t, g in rows]

    def last_checkpoint(self, agent: str) -> Checkpoint | None:
        """The agent's last checkpoint (decoded)."""
        row = self._conn.execute(
            f"SELECT blob FROM lineage WHERE agent = ? AND kind IN ({CHECKPOINT_KINDS_SQL}) "
            "ORDER BY seq DESC LIMIT 1",
            (agent,),
        ).fetchone()
        return Checkpoint.decode(row[0]) if row is not None else None

    def tail(self, agent: str) -> list[bytes]:
        """The agent's blobs from its last checkpoint on (that checkpoint, then whatever custody
        entries follow it), in chain order; empty without a checkpoint."""
        row = self._conn.execute(
            f"SELECT seq FROM lineage WHERE agent = ? AND kind IN ({CHECKPOINT_KINDS_SQL}) "
            "ORDER BY seq DESC LIMIT 1",
            (agent,),
        ).fetchone()
        return [] if row is None else self.lineage(agent, row[0])

    def tail_and_effects(self, agent: str) -> tuple[list[bytes], list[bytes]]:
        """:meth:`tail`, and the effect records before it in chain order (compaction keeps
        every effect record: they number the epoch's effects and carry its payments)."""
        row = self._conn.execute(
            f"SELECT seq FROM lineage WHERE agent = ? AND kind IN ({CHECKPOINT_KINDS_SQL}) "
            "ORDER BY seq DESC LIMIT 1",
            (agent,),
        ).fetchone()
        if row is None:
            return [], []
        effects = [
            bytes(blob)
            for (blob,) in self._conn.execute(
                "SELECT blob FROM lineage WHERE agent = ? AND seq < ? AND kind = 'EFFECT' "
                "ORDER BY seq",
                (agent, row[0]),
            )
        ]
        return self.lineage(agent, row[0]), effects

    def lineage_bytes(self, agent: str) -> int:
        """Bytes of the agent's stored lineage entries (what its storage cap counts)."""
        row = self._conn.execute(
            "SELECT COALESCE(SUM(length(blob)), 0) FROM lineage WHERE agent = ?", (agent,)
        ).fetchone()
        return int(row[0])

    def custody(self, agent: str) -> list[EpochStart]:
        """The verified epoch starts of the stored lineage, genesis first (empty if none).

        Read from the custody rows only (a partial index holds them), cached per agent."""
        cached = self._custody.get(agent)
        if cached is None:
            rows = self._conn.execute(
                f"SELECT kind, blob FROM lineage WHERE agent = ? AND kind IN ({CUSTODY_KINDS_SQL}) "
                "ORDER BY seq",
                (agent,),
            )
            cached = tuple(read_custody(rows))
            self._custody.put(agent, cached)
        return list(cached)

    def _extend_cached_custody(self, agent: str, ap: _AgentPlan) -> None:
        """A commit added custody rows: continue the cached custody with them (an old agent's
        custody is not decoded again after every handoff); anything else drops it."""
        cached = self._custody.items.get(agent)
        if cached is None or ap.discard_from is not None or ap.drop:
            self._custody.pop(agent)
            return
        new = [(row[4], row[8]) for row in ap.rows if row[4] in CUSTODY_KINDS]
        if new and new[0][0] == CERT_KIND:  # its record came in an earlier commit
            self._custody.pop(agent)
            return
        self._custody.put(agent, tuple(read_custody(new, cached)))  # type: ignore[arg-type]

    def cached_custody(self, agent: str) -> list[EpochStart] | None:
        """The agent's custody if it is in the cache (no I/O: safe from any thread, and as
        fresh as a read serialised with the commits, since the cache changes only when one
        lands)."""
        cached = self._custody.items.get(agent)  # a plain read: no LRU reordering
        return None if cached is None else list(cached)

    def module(self, wasm_hash: bytes) -> bytes | None:
        row = self._conn.execute("SELECT wasm FROM module WHERE hash = ?", (wasm_hash,)).fetchone()
        return row[0] if row is not None else None

    def manifest(self, manifest_hash: bytes) -> bytes | None:
        row = self._conn.execute(
            "SELECT data FROM manifest WHERE hash = ?", (manifest_hash,)
        ).fetchone()
        return row[0] if row is not None else None

    def witness(self, agent: str) -> WitnessRecord | None:
        """The agent's witness record (``CorruptWitness`` if it does not decode)."""
        row = self._conn.execute("SELECT record FROM witness WHERE agent = ?", (agent,)).fetchone()
        return decode_witness(row[0]) if row is not None else None

    def witness_starts(self, agent: str, after: int = 0) -> list[EpochStart]:
        """The custody links a witness stored for ``agent`` after epoch ``after``."""
        rows = self._conn.execute(
            "SELECT epoch, owner, witnesses, digest, forced, record, cert, genesis "
            "FROM witness_chain WHERE agent = ? AND epoch > ? ORDER BY epoch",
            (agent, after),
        )
        return [
            EpochStart(
                agent=agent,
                epoch=epoch,
                owner=owner,
                witnesses=tuple(msgpack.unpackb(witnesses)),
                digest=digest,
                record=record,
                cert=cert,
                forced=bool(forced),
                genesis=genesis,
            )
            for epoch, owner, witnesses, digest, forced, record, cert, genesis in rows
        ]

    def witness_usage(self) -> tuple[int, int]:
        """How many agents this store witnesses, and the bytes of their custody links."""
        agents = self._conn.execute("SELECT count(*) FROM witness").fetchone()[0]
        size = self._conn.execute(
            "SELECT coalesce(sum(length(record) + length(cert) + length(genesis)), 0) "
            "FROM witness_chain"
        ).fetchone()[0]
        return int(agents), int(size)

    def witness_chain(self, agent: str, after: int) -> tuple[int, tuple[bytes, ...]]:
        """The custody a witness stored after epoch ``after`` (wire form ``(after, blobs)``);
        when its chain starts later, from where it starts."""
        first = self._conn.execute(
            "SELECT min(epoch) FROM witness_chain WHERE agent = ?", (agent,)
        ).fetchone()[0]
        if first is None:
            return after, ()
        if first > 1:
            after = max(after, first - 1)
        blobs: list[bytes] = []
        for start in self.witness_starts(agent, after):
            blobs.extend(start.links())
        return after, tuple(blobs)

    # ------------------------------------------------------------------ integrity

    def check_integrity(self) -> list[IntegrityProblem]:
        """PRAGMA quick_check plus the per-agent checks (see docs/store.md); reads only."""
        try:
            return integrity.check(self._conn)
        except sqlite3.DatabaseError as e:
            return [IntegrityProblem("", f"reading failed: {e}", DamageKind.FILE)]


def _record_row(agent: str, ap: _AgentPlan) -> tuple[object, ...]:
    record = ap.record
    assert record is not None
    c = columns(record)
    v = ap.view
    return (
        agent,
        encode_record(record),
        c.state,
        c.epoch,
        c.fence,
        c.reason,
        c.peer,
        v.head,
        v.head_seq,
        v.wasm_hash,
        v.manifest_hash,
        v.copy_start,
        v.compacted_to,
    )
