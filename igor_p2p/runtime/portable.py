"""Portable agent files: export, import, and import of Go Igor agents.

A bundle file (``AgentBundle``: module, manifest, whole lineage) is *not* authority: possessing
one proves nothing. Authority moves with it only when the exporting node, which owns the agent,
retires durably and signs a transfer record naming the importing node
(``export --transfer-to PEER_ID``). Importing a bundle whose chain of custody ends at this node
makes this node ACTIVE_OWNER at that epoch; any other bundle is imported as a read-only copy
(RETIRED) that can be inspected and verified but never ticked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.agent.sandbox import Sandbox
from igor_p2p.authority.states import AuthorityState
from igor_p2p.errors import IgorError
from igor_p2p.lineage.bundle import AgentBundle
from igor_p2p.lineage.custody import UnsignedTransferRecord
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.export import EXPORT_REASON, ExportRecord
from igor_p2p.lineage.identity import KeyFileExists, Keypair, save_key_file
from igor_p2p.lineage.igor_go import parse_go_checkpoint, verify_go_signature
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.net.peerid import public_key_from_peer_id_text as public_key_from_peer_id
from igor_p2p.runtime.clock import NodeClock
from igor_p2p.runtime.datadir import DataDir
from igor_p2p.runtime.ledger import append_ops
from igor_p2p.runtime.loader import chain_order, check_owner, custodian, last_checkpoint
from igor_p2p.runtime.probe import probe_module
from igor_p2p.store.ops import Op, PutManifest, PutModule, PutTombstone, RaiseFence
from igor_p2p.store.records import AuthorityRecord, FirstRecord
from igor_p2p.store.sqlite import Store


def _probe(sandbox: Sandbox | None, *args: Any) -> None:
    if sandbox is not None:
        probe_module(sandbox, *args)
        return
    with Sandbox() as own:
        probe_module(own, *args)


class ImportRefused(IgorError):
    """The file cannot be imported here (invalid, conflicting with local state, or stale)."""


@dataclass(frozen=True)
class ImportOutcome:
    did: str
    state: AuthorityState
    epoch: int
    reason: str


def export_copy(store: Store, did: str) -> AgentBundle:
    """A read-only bundle of an agent this node knows (no authority moves)."""
    record = store.authority(did)
    if record is None:
        raise ImportRefused(f"no agent {did} here")
    wasm = store.module(record.wasm_hash)
    manifest = store.manifest(record.manifest_hash)
    if wasm is None or manifest is None:
        raise ImportRefused(f"module or manifest of {did} is missing")
    return AgentBundle(wasm=wasm, manifest=manifest, entries=tuple(store.lineage(did)))


def export_transfer(store: Store, key: Keypair, did: str, to_peer_id: str) -> AgentBundle:
    """Durably retire ``did`` here and sign its transfer to ``to_peer_id``; returns the bundle.

    The caller must hold the data directory lock (no node may be ticking the agent).
    """
    record, entries = check_owner(store, key, did)
    to_node = public_key_from_peer_id(to_peer_id)
    if to_node == key.public_key:
        raise ImportRefused("cannot transfer an agent to the node that already owns it")
    head = last_checkpoint(entries)
    handoff = UnsignedCheckpoint(
        agent=did,
        epoch=record.epoch,
        tick=head.tick,
        prev=entries[-1].digest(),
        kind=CheckpointKind.HANDOFF,
        wasm_hash=head.wasm_hash,
        manifest_hash=head.manifest_hash,
        budget=head.budget,
        price=head.price,
        wall_ns=time.time_ns(),
        state=head.state,
        owner=key.public_key,
    ).sign(key)
    transfer = UnsignedTransferRecord(
        agent=did,
        from_epoch=record.epoch,
        to_epoch=record.epoch + 1,
        from_node=key.public_key,
        to_node=to_node,
        prev=handoff.digest(),
        migration_id=os.urandom(16),
        wall_ns=time.time_ns(),
    ).sign(key)
    ops, _ = append_ops(
        record,
        [handoff, transfer],
        previous_tick=head.tick,
        state=AuthorityState.RETIRED,
        peer=to_peer_id,
        migration_id=transfer.migration_id,
        confirmed=False,
        reason=f"exported to {to_peer_id}",
    )
    ops.append(PutTombstone(did, record.epoch + 1, to_peer_id))
    store.apply(ops)
    return export_copy(store, did)


def import_bundle(
    store: Store, key: Keypair, bundle: AgentBundle, sandbox: Sandbox | None = None
) -> ImportOutcome:
    """Import a bundle: owner if its custody ends at this node, a read-only copy otherwise.

    Before anything is written the module is compiled, instantiated and given the head's state
    as a resume would (``probe_module``); a module that cannot run here is refused."""
    report = verify_lineage(bundle.entries)
    if not report.valid:
        reasons = "; ".join(f"{p.code.value}: {p.message}" for p in report.problems)
        raise ImportRefused(f"bundle lineage is invalid: {reasons}")
    entries = chain_order([decode_entry(b) for b in bundle.entries])
    head = last_checkpoint(entries)
    if hashlib.sha256(bundle.wasm).digest() != head.wasm_hash:
        raise ImportRefused("bundle module does not match the lineage's wasm hash")
    manifest = parse_manifest(bundle.manifest)
    if manifest.hash != head.manifest_hash:
        raise ImportRefused("bundle manifest does not match the lineage's manifest hash")
    did = head.agent
    holder, epoch = custodian(entries)
    if epoch < store.fence(did):
        raise ImportRefused(f"stale: bundle ends at epoch {epoch}, epoch {store.fence(did)} seen")
    existing = store.authority(did)
    known = 0
    if existing is not None:
        digests = [e.digest() for e in entries]
        if existing.head not in digests:
            raise ImportRefused("the bundle does not extend this node's lineage of the agent")
        known = digests.index(existing.head) + 1
        if existing.state is AuthorityState.ACTIVE_OWNER and known < len(entries):
            raise ImportRefused("this node owns the agent; a newer bundle contradicts it")
    _probe(
        sandbox,
        bundle.wasm,
        manifest,
        None if head.kind is CheckpointKind.GENESIS else head.state,
        head.budget,
    )
    owner = holder == key.public_key
    state = AuthorityState.ACTIVE_OWNER if owner else AuthorityState.RETIRED
    reason = "" if owner else "imported read-only copy; custody is with another node"
    if isinstance(entries[-1], ExportRecord):  # it left for Go Igor: nobody owns it here
        state, reason = AuthorityState.HALTED, EXPORT_REASON
    base = existing or AuthorityRecord.first(
        did,
        FirstRecord(
            state=state,
            epoch=epoch,
            owner=holder,
            wasm_hash=head.wasm_hash,
            manifest_hash=head.manifest_hash,
            reason=reason,
        ),
    )
    previous_tick = 0
    for e in entries[:known]:
        previous_tick = getattr(e, "tick", previous_tick)
    ops: list[Op] = [PutModule(bundle.wasm), PutManifest(manifest.canonical_bytes)]
    more, _ = append_ops(
        base,
        entries[known:],
        previous_tick=previous_tick,
        state=state,
        epoch=epoch,
        owner=holder,
        reason=reason,
    )
    ops += more
    ops.append(RaiseFence(did, epoch, "imported bundle"))
    store.apply(ops)
    return ImportOutcome(did=did, state=state, epoch=epoch, reason=reason)


@dataclass(frozen=True)
class GoImport:
    """A Go Igor agent: its checkpoint file, module, identity key file and manifest."""

    checkpoint: bytes
    wasm: bytes
    identity: Keypair
    manifest: bytes
    module_upgrade: bool = False
    """Continue the state with ``wasm`` although the checkpoint names another module."""


def import_go_agent(
    store: Store,
    key: Keypair,
    data: DataDir,
    request: GoImport,
    price: int,
    sandbox: Sandbox | None = None,
) -> ImportOutcome:
    """Continue a Go Igor agent here under its own DID.

    The Go checkpoint must match the module's hash, and (v0x04) carry the identity's key and a
    valid signature. The module must run here: it is compiled, instantiated and resumed from
    the Go state first (``probe_module``); nothing is written if any of this fails. The agent
    key signs an IMPORT genesis whose ``prev`` is the SHA-256 of the Go blob, naming this node
    as the first owner; the key file is kept here (mode 0600).
    """
    go = parse_go_checkpoint(request.checkpoint)
    wasm_hash = hashlib.sha256(request.wasm).digest()
    if wasm_hash != go.wasm_hash and not request.module_upgrade:
        raise ImportRefused(
            "the Go checkpoint was not produced by this module (wasm hash); continuing its "
            "state with another module is a module upgrade and must be asked for"
        )
    if go.version >= 4:
        if go.agent_pubkey != request.identity.public_key:
            raise ImportRefused("the Go checkpoint's key is not the identity's key")
        verify_go_signature(go)
    manifest = parse_manifest(request.manifest)
    did = request.identity.did
    if store.authority(did) is not None:
        raise ImportRefused(f"{did} already exists here")
    _probe(sandbox, request.wasm, manifest, go.state, go.budget)
    with contextlib.suppress(KeyFileExists):
        save_key_file(data.agent_key_path(did), request.identity)
    genesis = UnsignedCheckpoint(
        agent=did,
        epoch=1,
        tick=go.tick,
        prev=hashlib.sha256(go.raw).digest(),
        kind=CheckpointKind.IMPORT,
        wasm_hash=wasm_hash,
        manifest_hash=manifest.hash,
        budget=go.budget,
        price=price,
        wall_ns=NodeClock().wall_ns(),
        state=go.state,
        owner=key.public_key,
    ).sign(request.identity)
    record = AuthorityRecord.first(
        did,
        FirstRecord(
            state=AuthorityState.ACTIVE_OWNER,
            epoch=1,
            owner=key.public_key,
            wasm_hash=wasm_hash,
            manifest_hash=manifest.hash,
        ),
    )
    ops, _ = append_ops(record, [genesis], previous_tick=go.tick)
    store.apply([PutModule(request.wasm), PutManifest(manifest.canonical_bytes), *ops])
    return ImportOutcome(did=did, state=AuthorityState.ACTIVE_OWNER, epoch=1, reason="")
