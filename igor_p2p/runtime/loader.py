"""Bringing an agent into the runtime: a new genesis, or the stored lineage of an owned epoch.

Nothing here decides or writes authority: :func:`prepare_launch` makes a genesis (the authority
gate persists it with the ``Launched`` event), and :func:`load_hosted` builds the running agent
for an epoch the gate says this node ticks — after checking that the stored lineage verifies and
that its chain of custody ends at this node for exactly that epoch. Anything else raises a typed
error; the gate turns it into RECOVERY_REQUIRED with the reason (never a silent fresh start: Go
Igor flaw §12a.1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import trio

from igor_p2p.agent.effect_policy import http_policy, payment_policy
from igor_p2p.agent.environment import ResumeReason
from igor_p2p.agent.manifest import Manifest, parse_manifest
from igor_p2p.agent.sandbox import CompiledModule
from igor_p2p.authority.states import AuthorityState
from igor_p2p.core.ports import AuthorityStore
from igor_p2p.effects.journal import AgentEffects, EffectScan, EffectServices, scan_effects
from igor_p2p.errors import IgorError
from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.effect import EffectRecord
from igor_p2p.lineage.entries import Checkpoint, LineageEntry, decode_entry
from igor_p2p.lineage.envelope import CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import Keypair, save_key_file
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.logs import get_logger
from igor_p2p.runtime.goabi import wire_environment
from igor_p2p.runtime.hosted import AgentEnvironment, HostedAgent
from igor_p2p.runtime.services import NodeServices

log = get_logger(__name__)


class AgentNotFound(IgorError):
    """This node has no record of the agent."""


class NotOwner(IgorError):
    """This node does not hold authority over the agent (its state says why)."""

    def __init__(self, did: str, state: AuthorityState | str, reason: str) -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"{did} is {state} on this node{detail}")
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


@dataclass(frozen=True)
class Launch:
    """A new agent, not yet persisted: its genesis names this node owner of epoch 1."""

    did: str
    genesis: Checkpoint
    wasm: bytes
    manifest: bytes
    witnesses: tuple[bytes, ...]


async def compile_module(services: NodeServices, wasm: bytes) -> CompiledModule:
    return await trio.to_thread.run_sync(services.sandbox.compile, wasm)


async def check_runnable(services: NodeServices, wasm: bytes, manifest_bytes: bytes) -> None:
    """Compile and instantiate once, writing nothing (capabilities, imports, memory limits)."""
    manifest = parse_manifest(manifest_bytes)
    compiled = await compile_module(services, wasm)
    probe = AgentEnvironment(did="", clock=services.clock, budget=0)
    instance = await trio.to_thread.run_sync(
        services.sandbox.instantiate, compiled, manifest, probe
    )
    instance.close()


async def prepare_launch(
    services: NodeServices, request: LaunchRequest, witnesses: tuple[bytes, ...]
) -> Launch:
    """A fresh agent key (saved, 0600) and its genesis, naming this node and ``witnesses``."""
    manifest = parse_manifest(request.manifest)
    await check_runnable(services, request.wasm, request.manifest)
    agent_key = Keypair.generate()
    did = agent_key.did
    await trio.to_thread.run_sync(save_key_file, services.data.agent_key_path(did), agent_key)
    genesis = UnsignedCheckpoint(
        agent=did,
        epoch=1,
        tick=0,
        prev=ZERO_HASH,
        kind=CheckpointKind.GENESIS,
        wasm_hash=hashlib.sha256(request.wasm).digest(),
        manifest_hash=manifest.hash,
        budget=request.budget,
        price=services.price,
        wall_ns=services.clock.wall_ns(),
        state=b"",
        owner=services.key.public_key,
        witnesses=witnesses,
    ).sign(agent_key)
    return Launch(did, genesis, request.wasm, manifest.canonical_bytes, witnesses)


def last_checkpoint(entries: list[LineageEntry]) -> Checkpoint:
    for entry in reversed(entries):
        if isinstance(entry, Checkpoint):
            return entry
    raise LineageRejected("lineage holds no checkpoint")


async def load_hosted(
    services: NodeServices,
    store: AuthorityStore,
    did: str,
    epoch: int,
    reason: ResumeReason = ResumeReason.RESTARTED,
) -> HostedAgent:
    """The running agent for ``epoch``, which the authority gate says this node ticks."""
    blobs = await store.lineage(did)
    if not blobs:
        raise AgentNotFound(f"no lineage of {did} is stored here")
    report = await trio.to_thread.run_sync(
        lambda: verify_lineage(blobs, expected_agent=did, ordered=True)
    )
    if not report.valid:
        reasons = "; ".join(f"{p.code.value}: {p.message}" for p in report.problems[:3])
        raise LineageRejected(f"the stored lineage of {did} does not verify: {reasons}")
    if report.custodian != services.key.public_key or report.last_epoch != epoch:
        raise LineageRejected(
            f"the chain of custody of {did} does not end at this node for epoch {epoch}"
        )
    if report.pending_record is not None:
        raise LineageRejected(f"the lineage of {did} ends with an uncertified custody record")
    entries = [decode_entry(b) for b in blobs]
    head = last_checkpoint(entries)
    wasm = await store.module(head.wasm_hash)
    if wasm is None or hashlib.sha256(wasm).digest() != head.wasm_hash:
        raise LineageRejected(f"the module of {did} is missing or damaged in the store")
    manifest_bytes = await store.manifest(head.manifest_hash)
    if manifest_bytes is None:
        raise LineageRejected(f"the manifest of {did} is missing from the store")
    manifest = parse_manifest(manifest_bytes)
    compiled = await compile_module(services, wasm)
    if head.kind is CheckpointKind.GENESIS:
        reason = ResumeReason.FRESH
    gap = 0 if reason is ResumeReason.FRESH else max(0, services.clock.wall_ns() - head.wall_ns)
    scan = scan_effects(entries)
    env = AgentEnvironment(
        did=did,
        clock=services.clock,
        budget=max(0, head.budget - scan.charged_after_head),
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
        epoch=epoch,
        tip=entries[-1].digest(),
        head=head,
        price=services.price,
        effect_charges=scan.charged_after_head,
    )
    await _wire_effects(services, store, agent, manifest, scan)
    await trio.to_thread.run_sync(agent.start_instance, services.sandbox)
    return agent


async def _wire_effects(
    services: NodeServices,
    store: AuthorityStore,
    agent: HostedAgent,
    manifest: Manifest,
    scan: EffectScan,
) -> None:
    """Give an agent that declares ``http`` or ``x402`` its effect journal."""
    http, payment = http_policy(manifest), payment_policy(manifest)
    if http is None and payment is None and not scan.unresolved:
        return
    starts = await store.custody(agent.did)
    custody = next((s.digest for s in starts if s.epoch == agent.epoch), b"")
    if len(custody) != 32:
        raise LineageRejected(f"no verified start of epoch {agent.epoch} of {agent.did} here")
    history = services.history

    def on_entry(hosted: HostedAgent, record: EffectRecord, charge: int) -> None:
        history.emit(
            "commit",
            agent=hosted.did,
            epoch=record.epoch,
            tick=hosted.head.tick,
            kind="EFFECT",
            digest=record.digest(),
            prev=record.prev,
            budget=hosted.budget,
            charge=charge,
        )

    effect_services = EffectServices(
        key=services.key,
        sink=services.owned_append,
        settlement=services.settlement,
        wall_ns=services.clock.wall_ns,
        resolve=services.resolve,
        on_entry=on_entry,
    )
    agent.env.effects = AgentEffects(
        agent,
        effect_services,
        http=http,
        payment=payment,
        custody=custody,
        unresolved=scan.unresolved,
        first_seq=scan.effects_in_epoch.get(agent.epoch, 0),
    )
