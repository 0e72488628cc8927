"""The SQLite store as the node core's :class:`~igor_p2p.core.ports.AuthorityStore` (async).

Every write goes through the :class:`GroupCommitter` (so concurrent writers, of one agent or of
many, share fsyncs); reads of a few small columns run inline under the committer's limiter,
reads of blobs on its worker thread. The conformance suite (``tests/core/
test_conformance_store.py``) runs the same contract against this adapter and the simulator's
``SimStore``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import trio

from igor_p2p.authority.custody import EpochStart
from igor_p2p.authority.record import AuthorityRecord
from igor_p2p.authority.witness import WitnessRecord
from igor_p2p.bounded import BoundedLRU
from igor_p2p.core.ports import WitnessUsage
from igor_p2p.lineage.envelope import Checkpoint
from igor_p2p.store.committer import GroupCommitter
from igor_p2p.store.ops import (
    AppendEntries,
    AppendTicks,
    Compaction,
    CompactLineage,
    DiscardCopy,
    Op,
    PutManifest,
    PutModule,
    PutRecord,
    PutWitness,
    PutWitnessChain,
)
from igor_p2p.store.retention import COMPACTION_BATCH, Retention
from igor_p2p.store.sqlite import Store

KNOWN_FILES = 4096
"""Module and manifest hashes the adapter remembers as stored."""
CACHED_MODULES = 32
CACHED_MODULE_BYTES = 1024 * 1024
"""Modules up to this size are kept in memory (at most CACHED_MODULES of them)."""


class SqliteAuthorityStore:
    """:class:`~igor_p2p.core.ports.AuthorityStore` over a :class:`Store` and its committer
    (which must be running)."""

    def __init__(self, store: Store, committer: GroupCommitter) -> None:
        self.store = store
        self.committer = committer
        self._stored: BoundedLRU[bytes, None] = BoundedLRU(KNOWN_FILES)
        """Hashes of modules and manifests known to be durable here (they are never deleted),
        so storing one again costs no transaction."""
        self._modules: BoundedLRU[bytes, bytes] = BoundedLRU(CACHED_MODULES)
        """Small modules by hash (content-addressed, so never stale): no read on a handoff."""

    # ---------------------------------------------------------------- authority

    async def records(self) -> list[tuple[str, AuthorityRecord]]:
        return await self.committer.read(Store.records)

    async def record(self, agent: str) -> AuthorityRecord | None:
        return await self.committer.read_inline(lambda s: s.record(agent))

    async def commit_authority(
        self,
        agent: str,
        record: AuthorityRecord,
        append: Sequence[bytes] = (),
        *,
        discard_copy: bool = False,
    ) -> list[bytes]:
        """Persist ``record`` and append ``append`` (skipping entries already held; entries may
        follow a compacted gap) in one durable transaction; with ``discard_copy`` the entries a
        pending copy added are dropped first. Returns the entries actually appended."""
        ops: list[Op] = []
        if discard_copy:
            ops.append(DiscardCopy(agent))
        if append:
            ops.append(AppendEntries(agent, tuple(append)))
        ops.append(PutRecord(agent, record))
        results = await self.committer.commit(ops)
        if not append:
            return []
        appended = results[1 if discard_copy else 0]
        assert isinstance(appended, list)
        return appended

    async def append_ticks(self, agent: str, epoch: int, checkpoints: Sequence[Checkpoint]) -> None:
        """The runner's tick commits; :class:`~igor_p2p.core.ports.StoreRefused` unless this
        node durably owns exactly ``epoch`` and the checkpoints link to the head. (A scheduler
        committing many agents at once submits ``AppendTicks.of(...)`` groups to
        ``committer.commit_groups`` instead: one outcome per agent.)"""
        await self.committer.commit([AppendTicks.of(agent, epoch, checkpoints)])

    async def head(self, agent: str) -> bytes | None:
        return await self.committer.read_inline(lambda s: s.head(agent))

    async def lineage(self, agent: str) -> list[bytes]:
        return await self.committer.read(lambda s: s.lineage(agent))

    async def custody(self, agent: str) -> list[EpochStart]:
        cached = self.store.cached_custody(agent)
        if cached is not None:
            await trio.lowlevel.checkpoint()
            return cached
        return await self.committer.read(lambda s: s.custody(agent))

    async def last_checkpoint(self, agent: str) -> Checkpoint | None:
        return await self.committer.read(lambda s: s.last_checkpoint(agent))

    async def put_module(self, wasm: bytes, manifest: bytes) -> None:
        hashes = (hashlib.sha256(wasm).digest(), hashlib.sha256(manifest).digest())
        if all(h in self._stored for h in hashes):
            await trio.lowlevel.checkpoint()
            return
        await self.committer.commit([PutModule(wasm), PutManifest(manifest)])
        for h in hashes:
            self._stored[h] = None
        self._remember(hashes[0], wasm)

    async def module(self, wasm_hash: bytes) -> bytes | None:
        cached = self._modules.get(wasm_hash)
        if cached is not None:
            await trio.lowlevel.checkpoint()
            return cached
        wasm = await self.committer.read(lambda s: s.module(wasm_hash))
        if wasm is not None:
            self._stored[wasm_hash] = None
            self._remember(wasm_hash, wasm)
        return wasm

    def _remember(self, wasm_hash: bytes, wasm: bytes) -> None:
        if len(wasm) <= CACHED_MODULE_BYTES:
            self._modules[wasm_hash] = wasm

    async def manifest(self, manifest_hash: bytes) -> bytes | None:
        data = await self.committer.read_inline(lambda s: s.manifest(manifest_hash))
        if data is not None:
            self._stored[manifest_hash] = None
        return data

    # ---------------------------------------------------------------- witness

    async def witness(self, agent: str) -> WitnessRecord | None:
        return await self.committer.read_inline(lambda s: s.witness(agent))

    async def commit_witness(
        self, agent: str, record: WitnessRecord | None, learned: Sequence[EpochStart]
    ) -> None:
        """Persist a witness record and the custody links it learned, durably, in one go."""
        ops: list[Op] = []
        if record is not None:
            ops.append(PutWitness(agent, record))
        if learned:
            ops.append(PutWitnessChain(agent, tuple(learned)))
        await self.committer.commit(ops)

    async def witness_chain(self, agent: str, after: int) -> tuple[int, tuple[bytes, ...]]:
        return await self.committer.read(lambda s: s.witness_chain(agent, after))

    async def witness_usage(self) -> WitnessUsage:
        agents, size = await self.committer.read(lambda s: s.witness_usage())
        return WitnessUsage(agents, size)

    # ---------------------------------------------------------------- retention

    async def compact(
        self, agent: str, retention: Retention, *, batch: int = COMPACTION_BATCH
    ) -> int:
        """Drop the agent's old per-tick checkpoints under ``retention``, ``batch`` rows per
        transaction (ticks are committed between them). Returns how many rows were dropped."""
        if retention.retain_all:
            return 0
        dropped = 0
        while True:
            (result,) = await self.committer.commit(
                [CompactLineage(agent, retention.keep_last, batch)]
            )
            assert isinstance(result, Compaction)
            dropped += result.dropped
            if not result.more:
                return dropped
            await trio.lowlevel.checkpoint()
