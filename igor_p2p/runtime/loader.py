"""Bringing an agent into a node: launch (genesis), resume (from the store), import.

Every path that could start an agent checks that this node holds durable authority: the
authority record says ACTIVE_OWNER, its epoch is not below the fence, the whole lineage
verifies, and the chain of custody ends at this node's key. Anything else refuses with a typed
error and, where local state is damaged or ambiguous, records RECOVERY_REQUIRED with the reason
(never a silent fresh start: Go Igor flaw §12a.1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import trio

from igor_p2p.agent.environment import ResumeReason
from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.agent.sandbox import CompiledModule
from igor_p2p.authority.states import AuthorityState
from igor_p2p.errors import IgorError
from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.entries import (
    Checkpoint,
    ForcedRecovery,
    LineageEntry,
    TransferRecord,
    decode_entry,
)
from igor_p2p.lineage.envelope import CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair, save_key_file
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.logs import get_logger
from igor_p2p.runtime.goabi import wire_environment
from igor_p2p.runtime.hosted import AgentEnvironment, HostedAgent
from igor_p2p.runtime.ledger import append_ops
from igor_p2p.runtime.services import NodeServices
from igor_p2p.store.ops import MarkRecoveryRequired, PutManifest, PutModule
from igor_p2p.store.records import AuthorityRecord, FirstRecord
from igor_p2p.store.sqlite import Store

log = get_logger(__name__)


class AgentNotFound(IgorError):
    """This node has no record of the agent."""


class NotOwner(IgorError):
    """This node does not hold authority over the agent (its state says why)."""

    def __init__(self, did: str, state: AuthorityState, reason: str) -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"{did} is {state.value} on this node{detail}")
        self.did = did
        self.state = state
        self.reason = reason


class LineageRejected(IgorError):
    """The stored lineage does not verify, or its custody does not end at this node."""


@dataclass(frozen=True)
class LaunchRequest:
    """What a new agent is made of."""

    wasm: bytes
    manifest: bytes
    budget: int
    """Initial budget in µ."""


def chain_order(entries: list[LineageEntry]) -> list[LineageEntry]:
    """Entries in chain order, following ``prev`` links from the entry no other entry precedes.

    The input must already be a verified single chain.
    """
    by_prev = {e.prev: e for e in entries}
    digests = {e.digest() for e in entries}
    starts = [e for e in entries if e.prev not in digests]
    if len(starts) != 1:
        raise LineageRejected("lineage does not form one chain")
    ordered = [starts[0]]
    while (nxt := by_prev.get(ordered[-1].digest())) is not None:
        ordered.append(nxt)
    if len(ordered) != len(entries):
        raise LineageRejected("lineage does not form one chain")
    return ordered


def custodian(entries: list[LineageEntry]) -> tuple[bytes, int]:
    """(node key, epoch) that holds authority after the last entry of a chain."""
    last = entries[-1]
    if isinstance(last, TransferRecord):
        return last.to_node, last.to_epoch
    if isinstance(last, ForcedRecovery):
        return last.node, last.to_epoch
    return last.owner, last.epoch


def last_checkpoint(entries: list[LineageEntry]) -> Checkpoint:
    for entry in reversed(entries):
        if isinstance(entry, Checkpoint):
            return entry
    raise LineageRejected("lineage holds no checkpoint")


async def compile_module(services: NodeServices, wasm: bytes) -> CompiledModule:
    return await trio.to_thread.run_sync(services.sandbox.compile, wasm)


async def launch(services: NodeServices, request: LaunchRequest) -> HostedAgent:
    """Create a new agent: a fresh agent key, a genesis naming this node, durable before return."""
    manifest = parse_manifest(request.manifest)
    compiled = await compile_module(services, request.wasm)
    # Instantiate once before anything is written: capabilities and memory limits are checked.
    probe = AgentEnvironment(did="", clock=services.clock, budget=request.budget)
    instance = await trio.to_thread.run_sync(
        services.sandbox.instantiate, compiled, manifest, probe
    )
    instance.close()

    agent_key = Keypair.generate()
    did = agent_key.did
    await trio.to_thread.run_sync(save_key_file, services.data.agent_key_path(did), agent_key)
    genesis = UnsignedCheckpoint(
        agent=did,
        epoch=1,
        tick=0,
        prev=ZERO_HASH,
        kind=CheckpointKind.GENESIS,
        wasm_hash=compiled.sha256,
        manifest_hash=manifest.hash,
        budget=request.budget,
        price=services.price,
        wall_ns=services.clock.wall_ns(),
        state=b"",
        owner=services.key.public_key,
    ).sign(agent_key)
    record = AuthorityRecord.first(
        did,
        FirstRecord(
            state=AuthorityState.ACTIVE_OWNER,
            epoch=1,
            owner=services.key.public_key,
            wasm_hash=compiled.sha256,
            manifest_hash=manifest.hash,
        ),
    )
    ops, record = append_ops(record, [genesis], previous_tick=0)
    await services.committer.commit(
        [PutModule(request.wasm), PutManifest(manifest.canonical_bytes), *ops]
    )
    services.history.emit(
        "commit",
        agent=did,
        epoch=1,
        tick=0,
        kind="GENESIS",
        digest=genesis.digest(),
        prev=genesis.prev,
        budget=genesis.budget,
    )
    services.history.emit(
        "authority", agent=did, epoch=1, from_state=None, to_state="ACTIVE_OWNER", reason="launch"
    )
    log.info("launched", agent=did, epoch=1)
    return await _hosted(services, did, record, [genesis], compiled, ResumeReason.FRESH)


def load_verified_chain(
    store: Store, did: str, *, trust_signatures: bool = False
) -> tuple[AuthorityRecord, list[LineageEntry]]:
    """The authority record and the verified lineage of ``did`` (sync; run off the trio thread).

    Raises AgentNotFound, NotOwner, LineageRejected; a lineage that fails verification or whose
    custody does not end at the record's owner and epoch marks the agent RECOVERY_REQUIRED.
    """
    record = store.authority(did)
    if record is None:
        raise AgentNotFound(f"no agent {did} in {store.path}")
    blobs = store.lineage(did)
    trusted = {hashlib.sha256(b).digest() for b in blobs} if trust_signatures else frozenset()
    report = verify_lineage(blobs, expected_agent=did, trusted=trusted)
    if not report.valid:
        reasons = "; ".join(f"{p.code.value}: {p.message}" for p in report.problems)
        _mark(store, record, f"lineage invalid: {reasons}")
        raise LineageRejected(f"lineage of {did} is invalid: {reasons}")
    entries = chain_order([decode_entry(b) for b in blobs])
    if [e.digest() for e in entries] != [hashlib.sha256(b).digest() for b in blobs]:
        # The hash chain is intact but the stored rows are out of order (damage the integrity
        # check at open only sees in the last rows): local state is damaged, fail-stop.
        _mark(store, record, "stored lineage rows are not in chain order")
        raise LineageRejected(f"stored lineage of {did} is not in chain order")
    if entries[-1].digest() != record.head:
        _mark(store, record, "authority record head is not the head of the stored lineage")
        raise LineageRejected("authority record head does not match the lineage head")
    return record, entries


def _mark(store: Store, record: AuthorityRecord, reason: str) -> None:
    if record.state is not AuthorityState.RECOVERY_REQUIRED:
        store.apply([MarkRecoveryRequired(record.agent, reason)])
        log.warning("recovery required", agent=record.agent, epoch=record.epoch, step=reason)


def check_owner(
    store: Store, key: Keypair, did: str, *, trust_signatures: bool = False
) -> tuple[AuthorityRecord, list[LineageEntry]]:
    """Everything that must hold before this node may tick ``did`` (sync).

    ``trust_signatures`` skips re-checking signatures this node verified moments ago (a
    handoff target starting the agent it just validated); every other rule still runs.
    """
    record, entries = load_verified_chain(store, did, trust_signatures=trust_signatures)
    if record.state is not AuthorityState.ACTIVE_OWNER:
        raise NotOwner(did, record.state, record.reason)
    fence = store.fence(did)
    if record.epoch < fence:
        reason = f"stale: owns epoch {record.epoch} but epoch {fence} was seen"
        _mark(store, record, reason)
        raise NotOwner(did, AuthorityState.RECOVERY_REQUIRED, reason)
    holder, epoch = custodian(entries)
    if holder != key.public_key or epoch != record.epoch:
        reason = "chain of custody does not end at this node for the recorded epoch"
        _mark(store, record, reason)
        raise LineageRejected(reason)
    return record, entries


async def resume(
    services: NodeServices,
    did: str,
    reason: ResumeReason = ResumeReason.RESTARTED,
    *,
    trust_signatures: bool = False,
) -> HostedAgent:
    """Load an agent this node owns from the store and rebuild its instance from the head."""
    record, entries = await services.committer.read(
        lambda store: check_owner(store, services.key, did, trust_signatures=trust_signatures)
    )
    wasm = await services.committer.read(lambda store: store.module(record.wasm_hash))
    if wasm is None or hashlib.sha256(wasm).digest() != record.wasm_hash:
        await services.committer.commit(
            [MarkRecoveryRequired(did, "module missing or damaged in the store")]
        )
        raise LineageRejected(f"module of {did} is missing or damaged")
    compiled = await compile_module(services, wasm)
    return await _hosted(services, did, record, entries, compiled, reason)


@dataclass(frozen=True)
class VerifiedCopy:
    """A lineage this node verified entry by entry moments ago and made durable itself (a
    handoff target's prepared copy), so starting it need not read and verify it again."""

    head: Checkpoint
    """The last checkpoint of the chain."""
    last: LineageEntry
    """The last entry of the chain (the head, or the custody record after it)."""
    wasm: bytes
    manifest: bytes


def check_owner_of_verified(
    store: Store, key: Keypair, did: str, copy: VerifiedCopy
) -> AuthorityRecord:
    """:func:`check_owner` for a :class:`VerifiedCopy` (sync): the record, the fence, that the
    record's head is the copy's last entry, and that custody ends at this node. Reads no blobs."""
    record = store.authority(did)
    if record is None:
        raise AgentNotFound(f"no agent {did} in {store.path}")
    if record.state is not AuthorityState.ACTIVE_OWNER:
        raise NotOwner(did, record.state, record.reason)
    fence = store.fence(did)
    if record.epoch < fence:
        reason = f"stale: owns epoch {record.epoch} but epoch {fence} was seen"
        _mark(store, record, reason)
        raise NotOwner(did, AuthorityState.RECOVERY_REQUIRED, reason)
    if record.head != copy.last.digest():
        raise LineageRejected("authority record head is not the verified copy's head")
    if copy.last is not copy.head and copy.last.prev != copy.head.digest():
        raise LineageRejected("the verified copy's custody record does not follow its head")
    holder, epoch = custodian([copy.last])
    if holder != key.public_key or epoch != record.epoch:
        reason = "chain of custody does not end at this node for the recorded epoch"
        _mark(store, record, reason)
        raise LineageRejected(reason)
    return record


async def resume_verified(
    services: NodeServices, did: str, copy: VerifiedCopy, reason: ResumeReason
) -> HostedAgent:
    """:func:`resume` for a lineage this node just verified and persisted (one small read)."""
    record = await services.committer.read_inline(
        lambda store: check_owner_of_verified(store, services.key, did, copy)
    )
    if hashlib.sha256(copy.wasm).digest() != record.wasm_hash:
        raise LineageRejected(f"module of {did} does not match the authority record")
    if hashlib.sha256(copy.manifest).digest() != record.manifest_hash:
        raise LineageRejected(f"manifest of {did} does not match the authority record")
    compiled = await compile_module(services, copy.wasm)
    return await _hosted(
        services, did, record, [copy.head], compiled, reason, manifest_bytes=copy.manifest
    )


async def _hosted(
    services: NodeServices,
    did: str,
    record: AuthorityRecord,
    entries: list[LineageEntry],
    compiled: CompiledModule,
    reason: ResumeReason,
    *,
    manifest_bytes: bytes | None = None,
) -> HostedAgent:
    if manifest_bytes is None:
        manifest_bytes = await services.committer.read(lambda s: s.manifest(record.manifest_hash))
    if manifest_bytes is None:
        raise LineageRejected(f"manifest of {did} is missing from the store")
    manifest = parse_manifest(manifest_bytes)
    head = last_checkpoint(entries)
    if head.kind is CheckpointKind.GENESIS:
        reason = ResumeReason.FRESH
    gap = 0 if reason is ResumeReason.FRESH else max(0, services.clock.wall_ns() - head.wall_ns)
    env = AgentEnvironment(
        did=did,
        clock=services.clock,
        budget=head.budget,
        reason=reason,
        gap_ns=gap,
        on_migration_request=services.on_migration_request,
    )
    await wire_environment(services, env, manifest, entries)  # log book, price, receipts
    agent = HostedAgent(
        did=did,
        compiled=compiled,
        manifest=manifest,
        env=env,
        record=record,
        head=head,
        price=services.price,
    )
    await trio.to_thread.run_sync(agent.start_instance, services.sandbox)
    return agent
