"""The simulated disk and the in-memory :class:`~igor_p2p.core.ports.AuthorityStore` on it.

Rule: a write is durable only once its commit returns; a commit waits a random fsync latency
first, and a crash during that wait loses it. Every durable version is kept, so "restore this
node from an older backup" switches the disk back to any earlier durable version (the seed's
"restart with partial loss").

Each commit is atomic, as a SQLite transaction is. The store enforces the same rules as the
real one: lineage entries are appended in order (skipping ones already held), a tick checkpoint
is refused unless the durable record says this node owns exactly its epoch (the sink fence).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import trio

from igor_p2p.authority.custody import (
    EpochStart,
    InvalidCustody,
    chain_after,
    genesis_start,
    next_start,
)
from igor_p2p.authority.record import AuthorityRecord
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.core.ports import StoreRefused, WitnessUsage, link_bytes
from igor_p2p.lineage.cert import WitnessCert
from igor_p2p.lineage.custody import ForcedRecovery, TransferRecord
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind


@dataclass(frozen=True)
class Row:
    """One stored entry with the fields the checker and the store need (decoded once)."""

    digest: bytes
    blob: bytes
    prev: bytes
    kind: str
    epoch: int
    tick: int
    budget: int


class _Rows:
    """An append-only list shared by the disk versions that extend one another; a version that
    appends after an earlier length (a rollback happened) gets its own copy of the prefix."""

    def __init__(self, rows: list[Row] | None = None) -> None:
        self.rows = rows or []


@dataclass(frozen=True)
class AgentData:
    """One agent's stored lineage: entries in order, with the custody they prove."""

    store: _Rows = field(default_factory=_Rows)
    length: int = 0
    custody: tuple[EpochStart, ...] = ()
    copy_start: int | None = None
    """Index of the first entry a pending copy added (dropped by ``discard_copy``)."""
    last_checkpoint: int | None = None
    """Index of the last checkpoint entry."""

    @property
    def entries(self) -> list[Row]:
        return self.store.rows[: self.length]

    @property
    def head(self) -> bytes | None:
        return self.store.rows[self.length - 1].digest if self.length else None


@dataclass(frozen=True)
class DiskState:
    records: dict[str, AuthorityRecord] = field(default_factory=dict)
    agents: dict[str, AgentData] = field(default_factory=dict)
    witnesses: dict[str, WitnessRecord] = field(default_factory=dict)
    witness_chains: dict[str, tuple[EpochStart, ...]] = field(default_factory=dict)
    modules: dict[bytes, bytes] = field(default_factory=dict)
    manifests: dict[bytes, bytes] = field(default_factory=dict)


def _writable(data: AgentData) -> list[Row]:
    rows = data.store.rows
    if len(rows) != data.length:
        return list(rows[: data.length])
    return rows


def _extend(data: AgentData, blobs: Sequence[bytes], *, dedupe: bool = True) -> AgentData:
    """Append ``blobs`` (skipping entries already held), keeping the custody up to date."""
    rows = _writable(data)
    shared = rows is data.store.rows
    custody = list(data.custody)
    known = {r.digest for r in rows} if dedupe else set()
    last_ck = data.last_checkpoint
    pending_record: bytes | None = None
    tick = rows[-1].tick if rows else 0
    for blob in blobs:
        digest = hashlib.sha256(blob).digest()
        if digest in known:
            continue
        entry = decode_entry(blob)
        if isinstance(entry, Checkpoint):
            if entry.kind in (CheckpointKind.GENESIS, CheckpointKind.IMPORT) and not custody:
                custody.append(genesis_start(entry, verified=True))
            last_ck = len(rows)
            tick = entry.tick
            row = Row(digest, blob, entry.prev, entry.kind.name, entry.epoch, tick, entry.budget)
        elif isinstance(entry, TransferRecord | ForcedRecovery):
            pending_record = blob
            kind = "TRANSFER" if isinstance(entry, TransferRecord) else "FORCED"
            row = Row(digest, blob, entry.prev, kind, entry.to_epoch, tick, 0)
        else:
            assert isinstance(entry, WitnessCert)
            if pending_record is not None and custody:
                with contextlib.suppress(InvalidCustody):
                    custody.append(next_start(custody[-1], pending_record, blob, verified=True))
            pending_record = None
            row = Row(digest, blob, entry.prev, "CERT", entry.slot, tick, 0)
        rows.append(row)
        known.add(digest)
    store = data.store if shared else _Rows(rows)
    return replace(
        data, store=store, length=len(rows), custody=tuple(custody), last_checkpoint=last_ck
    )


def append_checkpoint(data: AgentData, ck: Checkpoint) -> AgentData:
    """The runner's fast path: one fresh checkpoint, no decoding, no dedupe."""
    rows = _writable(data)
    shared = rows is data.store.rows
    rows.append(Row(ck.digest(), ck.encode(), ck.prev, ck.kind.name, ck.epoch, ck.tick, ck.budget))
    store = data.store if shared else _Rows(rows)
    return replace(data, store=store, length=len(rows), last_checkpoint=len(rows) - 1)


def _truncate(data: AgentData, length: int) -> AgentData:
    rebuilt = _extend(AgentData(), [r.blob for r in data.entries[:length]])
    return replace(rebuilt, copy_start=None)


class SimDisk:
    """Every durable version of one node's store; survives crashes, can be rolled back."""

    def __init__(self) -> None:
        self.versions: list[DiskState] = [DiskState()]

    @property
    def state(self) -> DiskState:
        return self.versions[-1]

    def write(self, state: DiskState) -> None:
        self.versions.append(state)

    def restore(self, index: int) -> DiskState:
        """Roll back to durable version ``index`` (later versions are lost, as on a restore)."""
        state = self.versions[index]
        self.versions.append(state)
        return state


class NodeCrashed(BaseException):
    """The simulated process is dead: nothing of it may touch the disk or the network again
    (not even cleanup code running under a cancel shield, as nothing runs after a kill -9)."""


class SimStore:
    """The :class:`~igor_p2p.core.ports.AuthorityStore` of one simulated node."""

    def __init__(self, disk: SimDisk, fsync: tuple[float, float], rng_uniform) -> None:  # type: ignore[no-untyped-def]
        self.disk = disk
        self._fsync = fsync
        self._uniform = rng_uniform
        self._lock = trio.Lock()
        self.alive = True
        self.crash_after: Callable[[AuthorityRecord], bool] | None = None
        """A crash point: the process dies right after a record this says yes to is durable."""

    def _check(self) -> None:
        if not self.alive:
            raise NodeCrashed()

    async def _sync(self) -> None:
        await trio.sleep(self._uniform(*self._fsync))
        self._check()

    # ---------------------------------------------------------------- authority

    async def records(self) -> list[tuple[str, AuthorityRecord]]:
        self._check()
        await trio.lowlevel.checkpoint()
        return sorted(self.disk.state.records.items())

    async def record(self, agent: str) -> AuthorityRecord | None:
        self._check()
        return self.disk.state.records.get(agent)

    async def commit_authority(
        self,
        agent: str,
        record: AuthorityRecord,
        append: Sequence[bytes] = (),
        *,
        discard_copy: bool = False,
    ) -> list[bytes]:
        self._check()
        async with self._lock:
            state = self.disk.state
            data = state.agents.get(agent, AgentData())
            if discard_copy and data.copy_start is not None:
                data = _truncate(data, data.copy_start)
            before = len(data.entries)
            data = _extend(data, append)
            if record.state is AuthorityState.HANDOFF_PENDING and len(data.entries) > before:
                data = replace(
                    data, copy_start=before if data.copy_start is None else data.copy_start
                )
            elif record.state is not AuthorityState.HANDOFF_PENDING:
                data = replace(data, copy_start=None)
            new = replace(
                state,
                records={**state.records, agent: record},
                agents={**state.agents, agent: data},
            )
            await self._sync()
            self.disk.write(new)
            if self.crash_after is not None and self.crash_after(record):
                self.alive = False
                raise NodeCrashed()
            return [r.blob for r in data.entries[before:]]

    async def append_ticks(self, agent: str, epoch: int, checkpoints: Sequence[Checkpoint]) -> None:
        """The runner's tick commits, refused unless this node owns ``epoch`` durably."""
        self._check()
        async with self._lock:
            state = self.disk.state
            record = state.records.get(agent)
            if record is None or record.state is not AuthorityState.ACTIVE_OWNER:
                raise StoreRefused(f"{agent}: not the owner here")
            if record.epoch != epoch:
                raise StoreRefused(f"{agent}: owns epoch {record.epoch}, not {epoch}")
            data = state.agents.get(agent, AgentData())
            for ck in checkpoints:
                data = append_checkpoint(data, ck)
            new = replace(state, agents={**state.agents, agent: data})
            await self._sync()
            self.disk.write(new)

    async def head(self, agent: str) -> bytes | None:
        self._check()
        data = self.disk.state.agents.get(agent)
        return data.head if data else None

    async def lineage(self, agent: str) -> list[bytes]:
        self._check()
        data = self.disk.state.agents.get(agent)
        return [r.blob for r in data.entries] if data else []

    async def custody(self, agent: str) -> list[EpochStart]:
        self._check()
        data = self.disk.state.agents.get(agent)
        return list(data.custody) if data else []

    async def last_checkpoint(self, agent: str) -> Checkpoint | None:
        self._check()
        data = self.disk.state.agents.get(agent)
        if data is None or data.last_checkpoint is None:
            return None
        entry = decode_entry(data.store.rows[data.last_checkpoint].blob)
        assert isinstance(entry, Checkpoint)
        return entry

    async def put_module(self, wasm: bytes, manifest: bytes) -> None:
        self._check()
        async with self._lock:
            state = self.disk.state
            wh = hashlib.sha256(wasm).digest()
            mh = hashlib.sha256(manifest).digest()
            if wh in state.modules and mh in state.manifests:
                return
            new = replace(
                state,
                modules={**state.modules, wh: wasm},
                manifests={**state.manifests, mh: manifest},
            )
            await self._sync()
            self.disk.write(new)

    async def module(self, wasm_hash: bytes) -> bytes | None:
        self._check()
        return self.disk.state.modules.get(wasm_hash)

    async def manifest(self, manifest_hash: bytes) -> bytes | None:
        self._check()
        return self.disk.state.manifests.get(manifest_hash)

    # ---------------------------------------------------------------- witness

    async def witness(self, agent: str) -> WitnessRecord | None:
        self._check()
        return self.disk.state.witnesses.get(agent)

    async def commit_witness(
        self, agent: str, record: WitnessRecord | None, learned: Sequence[EpochStart]
    ) -> None:
        self._check()
        async with self._lock:
            state = self.disk.state
            witnesses = dict(state.witnesses)
            if record is not None:
                witnesses[agent] = record
            chains = dict(state.witness_chains)
            if learned:
                chain = list(chains.get(agent, ()))
                for start in learned:
                    if chain and start.epoch <= chain[-1].epoch:
                        continue
                    chain.append(start)
                chains[agent] = tuple(chain)
            new = replace(state, witnesses=witnesses, witness_chains=chains)
            await self._sync()
            self.disk.write(new)

    async def witness_usage(self) -> WitnessUsage:
        self._check()
        state = self.disk.state
        size = sum(link_bytes(s) for chain in state.witness_chains.values() for s in chain)
        return WitnessUsage(len(state.witnesses), size)

    async def witness_chain(self, agent: str, after: int) -> tuple[int, tuple[bytes, ...]]:
        self._check()
        chain = self.disk.state.witness_chains.get(agent, ())
        if not chain:
            return after, ()
        first = chain[0].epoch
        return chain_after(chain, max(after, first - 1) if first > 1 else after)
