"""Portable agent files: export, import, and import of Go Igor agents.

A bundle file (``AgentBundle``: module, manifest, lineage) is *not* authority: possessing one
proves nothing. Authority moves with it only when the exporting node, which owns the agent,
hands it over with a certified transfer record naming the importing node
(``export --transfer-to PEER_ID``); offline, that is possible only for an agent without
witnesses (one launched with ``igor agent run``): an agent with witnesses moves between running
nodes with ``igor agent migrate``. Importing a bundle whose chain of custody ends at this node
makes this node the owner — and, like any restart, it claims a new epoch before ticking; any
other bundle is imported as a read-only copy (RETIRED) that can be inspected and verified but
never ticked.

Every change goes through the authority gate of an offline node core
(:mod:`igor_p2p.runtime.offline`).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

import trio

from igor_p2p.agent.manifest import parse_manifest
from igor_p2p.agent.sandbox import Sandbox
from igor_p2p.authority.events import CopyImported
from igor_p2p.authority.states import AuthorityState
from igor_p2p.core.handoff import MigrationResult
from igor_p2p.core.ports import AuthorityStore
from igor_p2p.errors import IgorError
from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.bundle import AgentBundle
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.export import ExportRecord
from igor_p2p.lineage.identity import KeyFileExists, Keypair, save_key_file
from igor_p2p.lineage.igor_go import parse_go_checkpoint, verify_go_signature
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.net.peerid import public_key_from_peer_id_text as public_key_from_peer_id
from igor_p2p.runtime.loader import last_checkpoint
from igor_p2p.runtime.offline import OfflineCore, claim_here
from igor_p2p.runtime.probe import probe_module


def _probe(sandbox: Sandbox | None, *args: Any) -> None:
    if sandbox is not None:
        probe_module(sandbox, *args)
        return
    with Sandbox() as own:
        probe_module(own, *args)


class ImportRefused(IgorError):
    """The file cannot be imported here (invalid, conflicting with local state, or stale)."""


class TransferRefused(IgorError):
    """The agent cannot be handed over offline from here (the message says why)."""


@dataclass(frozen=True)
class ImportOutcome:
    did: str
    state: AuthorityState
    epoch: int
    reason: str


async def export_copy(store: AuthorityStore, did: str) -> AgentBundle:
    """A read-only bundle of an agent this node knows (no authority moves)."""
    lineage = await store.lineage(did)
    if not lineage:
        raise ImportRefused(f"no agent {did} here")
    head = last_checkpoint([decode_entry(b) for b in lineage])
    wasm = await store.module(head.wasm_hash)
    manifest = await store.manifest(head.manifest_hash)
    if wasm is None or manifest is None:
        raise ImportRefused(f"module or manifest of {did} is missing")
    return AgentBundle(wasm=wasm, manifest=manifest, entries=tuple(lineage))


async def export_transfer(offline: OfflineCore, did: str, to_peer_id: str) -> AgentBundle:
    """Hand ``did`` to ``to_peer_id`` with a certified transfer record; returns the bundle."""
    to_node = public_key_from_peer_id(to_peer_id)
    if to_node == offline.services.key.public_key:
        raise TransferRefused("cannot transfer an agent to the node that already owns it")
    record = await offline.store.record(did)
    if record is None:
        raise TransferRefused(f"no agent {did} here")
    if record.witnesses:
        raise TransferRefused(
            f"{did} has witnesses, which must agree to every transfer: run the node and move it "
            "with `igor agent migrate`"
        )
    if not await claim_here(offline, did):
        state = (offline.core.describe(did) or {}).get("state", record.state)
        raise TransferRefused(f"{did} is {state} here, not owned: it cannot be handed over")
    outcome = await offline.core.source.transfer_offline(did, to_node)
    if outcome.result is not MigrationResult.TRANSFERRED:
        raise TransferRefused(f"the transfer did not happen: {outcome.reason}")
    return await export_copy(offline.store, did)


async def import_bundle(
    offline: OfflineCore, bundle: AgentBundle, sandbox: Sandbox | None = None
) -> ImportOutcome:
    """Import a bundle: owner if its custody ends at this node, a read-only copy otherwise.

    Before anything is written the module is compiled, instantiated and given the head's state
    as a resume would (``probe_module``); a module that cannot run here is refused."""
    report = await trio.to_thread.run_sync(lambda: verify_lineage(bundle.entries, ordered=True))
    if not report.valid:
        reasons = "; ".join(f"{p.code.value}: {p.message}" for p in report.problems[:5])
        raise ImportRefused(f"bundle lineage is invalid: {reasons}")
    if report.pending_record is not None:
        raise ImportRefused("the bundle ends with a custody record that was never certified")
    entries = [decode_entry(b) for b in bundle.entries]
    head = last_checkpoint(entries)
    if hashlib.sha256(bundle.wasm).digest() != head.wasm_hash:
        raise ImportRefused("bundle module does not match the lineage's wasm hash")
    manifest = parse_manifest(bundle.manifest)
    if manifest.hash != head.manifest_hash:
        raise ImportRefused("bundle manifest does not match the lineage's manifest hash")
    did = head.agent
    epoch = report.last_epoch or 1
    existing = await offline.store.record(did)
    if existing is not None and existing.state is not AuthorityState.RETIRED:
        raise ImportRefused(f"{did} is {existing.state} here; a bundle cannot replace it")
    if existing is not None and existing.fence > epoch:
        raise ImportRefused(f"stale: the bundle ends at epoch {epoch}, {existing.fence} is known")
    state = None if head.kind is CheckpointKind.GENESIS else head.state
    await trio.to_thread.run_sync(_probe, sandbox, bundle.wasm, manifest, state, head.budget)
    await offline.store.put_module(bundle.wasm, manifest.canonical_bytes)
    me = offline.services.key.public_key
    exported = isinstance(entries[-1], ExportRecord)
    custodian = report.custodian or b""
    if custodian == me and not exported:
        await offline.core.imported(
            did,
            epoch=epoch,
            witnesses=report.witnesses,
            entries=tuple(bundle.entries),
            fresh=False,
            wasm=bundle.wasm,
            manifest=manifest.canonical_bytes,
        )
        return ImportOutcome(did, AuthorityState.ACTIVE_OWNER, epoch, "")
    reason = "it left for Go Igor" if exported else "read-only copy; custody is with another node"
    owner = custodian if len(custodian) == 32 else ZERO_HASH
    await offline.core.gate.feed(
        did, CopyImported(epoch, report.witnesses, tuple(bundle.entries), owner)
    )
    return ImportOutcome(did, AuthorityState.RETIRED, epoch, reason)


@dataclass(frozen=True)
class GoImport:
    """A Go Igor agent: its checkpoint file, module, identity key file and manifest."""

    checkpoint: bytes
    wasm: bytes
    identity: Keypair
    manifest: bytes
    module_upgrade: bool = False
    """Continue the state with ``wasm`` although the checkpoint names another module."""


async def import_go_agent(
    offline: OfflineCore, request: GoImport, sandbox: Sandbox | None = None
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
    if await offline.store.record(did) is not None:
        raise ImportRefused(f"{did} already exists here")
    await trio.to_thread.run_sync(_probe, sandbox, request.wasm, manifest, go.state, go.budget)
    services = offline.services
    with contextlib.suppress(KeyFileExists):
        save_key_file(services.data.agent_key_path(did), request.identity)
    genesis = UnsignedCheckpoint(
        agent=did,
        epoch=1,
        tick=go.tick,
        prev=hashlib.sha256(go.raw).digest(),
        kind=CheckpointKind.IMPORT,
        wasm_hash=wasm_hash,
        manifest_hash=manifest.hash,
        budget=go.budget,
        price=services.price,
        wall_ns=services.clock.wall_ns(),
        state=go.state,
        owner=services.key.public_key,
        witnesses=(),
    ).sign(request.identity)
    await offline.core.imported(
        did,
        epoch=1,
        witnesses=(),
        entries=(genesis.encode(),),
        fresh=True,
        wasm=request.wasm,
        manifest=manifest.canonical_bytes,
    )
    return ImportOutcome(did=did, state=AuthorityState.ACTIVE_OWNER, epoch=1, reason="")
