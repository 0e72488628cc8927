"""Bringing an agent into the runtime: a new genesis, or the stored lineage of an owned epoch.

Nothing here decides or writes authority: :func:`prepare_launch` makes a genesis (the authority
gate persists it with the ``Launched`` event), and :func:`load_hosted` builds the running agent
for an epoch the gate says this node ticks — after checking what it runs from: the chain of
custody (every signature and certificate, from the genesis) ends at this node for exactly that
epoch, and the head checkpoint is signed by the owner of its epoch and linked, entry by entry,
to that chain's end (:func:`verify_for_load`). That costs O(custody hops + state), whatever the
agent's age: the per-tick checkpoints before the head (compacted or not) are not read. The first
load of an agent in a process verifies its custody from the genesis; later ones only the epochs
after what that process verified before (:mod:`igor_p2p.runtime.verified_custody`). Anything
else raises a typed error; the gate turns it into RECOVERY_REQUIRED with the reason (never a
silent fresh start: Go Igor flaw §12a.1).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import trio

from igor_p2p.agent.effect_policy import http_policy, payment_policy
from igor_p2p.agent.environment import ResumeReason
from igor_p2p.agent.manifest import Manifest, parse_manifest
from igor_p2p.agent.sandbox import CompiledModule
from igor_p2p.authority.custody import EpochStart, chain_from_genesis, follow
from igor_p2p.authority.states import AuthorityState
from igor_p2p.core.ports import AuthorityStore
from igor_p2p.effects.journal import AgentEffects, EffectScan, EffectServices, scan_effects
from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.lineage._codec import ZERO_HASH
from igor_p2p.lineage.custody import ForcedRecovery, TransferRecord
from igor_p2p.lineage.effect import EffectRecord
from igor_p2p.lineage.entries import Checkpoint, LineageEntry, decode_entry
from igor_p2p.lineage.envelope import CheckpointKind, UnsignedCheckpoint
from igor_p2p.lineage.identity import BadSignature, Keypair, save_key_file
from igor_p2p.logs import get_logger
from igor_p2p.runtime.goabi import wire_basics, wire_environment
from igor_p2p.runtime.hosted import AgentEnvironment, HostedAgent
from igor_p2p.runtime.services import NodeServices
from igor_p2p.store.sqlite import Store

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


def verify_for_load(
    did: str,
    me: bytes,
    epoch: int,
    custody: list[EpochStart],
    tail: list[bytes],
    verified: int = 0,
) -> tuple[Checkpoint, list[LineageEntry], EpochStart]:
    """The head checkpoint, the decoded ``tail`` (the head and the entries after it) and the
    verified start of ``epoch`` if the agent may be run here at that epoch;
    :class:`LineageRejected` otherwise. Effect records after the head (effects of ticks no
    checkpoint covers yet) are allowed, each signed by the owner of its epoch.

    Verified: the custody from the genesis (signatures and certificates, again: the store keeps
    only links that verified when they arrived, and this checks they still do), that it ends at
    this node for ``epoch``; the head's signature by the owner of its epoch; and that the entries
    after the head are exactly the custody links of the later epochs, each naming the one before.
    The first ``verified`` starts of ``custody`` were verified so by this process already
    (:class:`~igor_p2p.runtime.verified_custody.VerifiedCustody`): only the links after them are.
    """
    if not custody or not tail:
        raise AgentNotFound(f"no lineage of {did} is stored here")
    try:
        if 1 <= verified <= len(custody):
            trusted = custody[:verified]
            starts = [*trusted, *follow(trusted[-1], _links_of(custody[verified:]))]
        else:
            starts = chain_from_genesis(custody[0].genesis, _links_of(custody[1:]))
        entries = [decode_entry(blob) for blob in tail]
    except InvalidInput as exc:
        raise LineageRejected(f"the stored custody of {did} does not verify: {exc}") from None
    current = starts[-1]
    if current.agent != did or current.owner != me or current.epoch != epoch:
        raise LineageRejected(
            f"the chain of custody of {did} does not end at this node for epoch {epoch}"
        )
    head = entries[0]
    if not isinstance(head, Checkpoint) or head.agent != did or head.epoch > current.epoch:
        raise LineageRejected(f"the stored head of {did} is not one of its checkpoints")
    if head.kind in (CheckpointKind.GENESIS, CheckpointKind.IMPORT):
        if head.digest() != starts[0].digest:
            raise LineageRejected(f"the stored genesis of {did} is not the custody's")
    else:
        if head.signer != starts[head.epoch - 1].owner:
            raise LineageRejected(f"the head of {did} is not signed by the owner of its epoch")
        try:
            head.verify_signature()
        except BadSignature:
            raise LineageRejected(f"the head of {did} has a bad signature") from None
    after = [blob for start in starts[head.epoch :] for blob in start.links()]
    effects = [e for e in entries[1:] if isinstance(e, EffectRecord)]
    for effect in effects:
        if not head.epoch <= effect.epoch <= current.epoch or (
            effect.owner != starts[effect.epoch - 1].owner
        ):
            raise LineageRejected(f"an effect record after the head of {did} is not its owner's")
        try:
            effect.verify_signature()
        except BadSignature:
            raise LineageRejected(f"an effect record of {did} has a bad signature") from None
    if [
        b for b, e in zip(tail[1:], entries[1:], strict=True) if not isinstance(e, EffectRecord)
    ] != after:
        if isinstance(entries[-1], TransferRecord | ForcedRecovery):
            raise LineageRejected(f"the lineage of {did} ends with an uncertified custody record")
        raise LineageRejected(f"the entries after the head of {did} are not its custody")
    for before, entry in itertools.pairwise(entries):
        if entry.prev != before.digest():
            raise LineageRejected(f"the entries after the head of {did} do not link")
    return head, entries, current


def _links_of(starts: list[EpochStart]) -> list[bytes]:
    return [blob for start in starts for blob in start.links()]


@dataclass(frozen=True)
class _Stored:
    """What the store holds to run an agent (one read on the store's worker)."""

    tail: list[bytes]
    effects_before: list[bytes]
    """The effect records before the head (they number the epoch's effects)."""
    stored_bytes: int
    wasm: bytes | None
    manifest: bytes | None


def _read_for_load(store: Store, did: str) -> _Stored:
    tail, effects_before = store.tail_and_effects(did)
    wasm = manifest = None
    if tail:
        try:
            head = Checkpoint.decode(tail[0])
        except InvalidInput:
            head = None
        if head is not None:
            wasm = store.module(head.wasm_hash)
            manifest = store.manifest(head.manifest_hash)
    return _Stored(tail, effects_before, store.lineage_bytes(did), wasm, manifest)


async def load_hosted(
    services: NodeServices,
    store: AuthorityStore,
    did: str,
    epoch: int,
    reason: ResumeReason = ResumeReason.RESTARTED,
) -> HostedAgent:
    """The running agent for ``epoch``, which the authority gate says this node ticks.

    Two thread hops: one store read (the tail, the module, the manifest), then the checks,
    the compilation (cached) and the instance (the state resumed into it)."""
    custody = await store.custody(did)
    stored = await services.committer.read(lambda s: _read_for_load(s, did))
    me = services.key.public_key
    now_ns = services.clock.wall_ns()

    marks = services.verified_custody
    verified = marks.verified_prefix(did, custody)

    def build() -> tuple[HostedAgent, list[LineageEntry], EffectScan, EpochStart]:
        head, entries, current = verify_for_load(did, me, epoch, custody, stored.tail, verified)
        try:
            earlier = [EffectRecord.decode(blob) for blob in stored.effects_before]
        except InvalidInput as exc:
            raise LineageRejected(f"a stored effect record of {did} is damaged: {exc}") from None
        scan = scan_effects([*earlier, *entries])
        wasm = stored.wasm
        if wasm is None or hashlib.sha256(wasm).digest() != head.wasm_hash:
            raise LineageRejected(f"the module of {did} is missing or damaged in the store")
        if stored.manifest is None:
            raise LineageRejected(f"the manifest of {did} is missing from the store")
        manifest = parse_manifest(stored.manifest)
        compiled = services.sandbox.compile(wasm)
        why = ResumeReason.FRESH if head.kind is CheckpointKind.GENESIS else reason
        gap = 0 if why is ResumeReason.FRESH else max(0, now_ns - head.wall_ns)
        env = AgentEnvironment(
            did=did,
            clock=services.clock,
            budget=max(0, head.budget - scan.charged_after_head),
            reason=why,
            gap_ns=gap,
            on_migration_request=services.on_migration_request,
        )
        agent = HostedAgent(
            did=did,
            compiled=compiled,
            manifest=manifest,
            env=env,
            epoch=epoch,
            tip=entries[-1].digest(),
            head=head,
            price=services.price,
            stored_bytes=stored.stored_bytes,
            effect_charges=scan.charged_after_head,
        )
        if not manifest.declares("wallet") and not _has_effects(manifest, scan):
            wire_basics(services, env)  # no receipts, no effect journal: start it in this hop
            agent.start_instance(services.sandbox)
        return agent, entries, scan, current

    agent, entries, scan, current = await trio.to_thread.run_sync(build)
    marks.remember(current)
    if agent.instance is None:
        await wire_environment(services, agent.env, agent.manifest, entries)  # receipts
        await _wire_effects(services, store, agent, agent.manifest, scan)
        await trio.to_thread.run_sync(agent.start_instance, services.sandbox)
    return agent


def _has_effects(manifest: Manifest, scan: EffectScan) -> bool:
    return (
        http_policy(manifest) is not None
        or payment_policy(manifest) is not None
        or bool(scan.unresolved)
    )


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
