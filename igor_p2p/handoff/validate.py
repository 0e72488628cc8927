"""The target's check of an OFFER: everything is verified before anything is persisted.

Module and manifest hashes, every signature and link of the offered lineage from its genesis,
that its custody ends at the offering peer for the offered epoch, that the last entry is a fresh
HANDOFF checkpoint, continuity with any copy of the agent this node already holds, the
manifest's capabilities and migration policy, the budget, and this node's capacity (MC-6). The
check has no side effects: the session persists HANDOFF_PENDING only after a passing verdict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from igor_p2p.agent.manifest import KNOWN_CAPABILITIES, ManifestError, parse_manifest
from igor_p2p.authority.states import AuthorityState
from igor_p2p.authority.table import RejectCode
from igor_p2p.errors import InvalidInput
from igor_p2p.handoff.messages import Offer
from igor_p2p.lineage.entries import Checkpoint, LineageEntry, decode_entry
from igor_p2p.lineage.envelope import CheckpointKind
from igor_p2p.lineage.verify import verify_lineage
from igor_p2p.net.keys import public_key_from_peer_id
from igor_p2p.runtime.capacity import ResourceCheck, admit_offer
from igor_p2p.runtime.loader import LineageRejected, chain_order, custodian
from igor_p2p.store.sqlite import Store


@dataclass(frozen=True)
class TargetLimits:
    price: int
    capacity: int
    hosted: int
    resources: ResourceCheck | None = None
    """The node's memory and disk budget and use (``Node.resource_check()``); None = unchecked."""


@dataclass(frozen=True)
class PreparedCopy:
    """What the target persists with HANDOFF_PENDING once the offer passed."""

    entries: tuple[LineageEntry, ...]
    """Entries this node does not hold yet, in chain order."""
    previous_tick: int
    checkpoint: Checkpoint
    wasm: bytes
    manifest: bytes
    chain: tuple[LineageEntry, ...] = ()
    """The whole verified chain (held prefix + new entries) ending at ``checkpoint``."""


class OfferRefused(InvalidInput):
    def __init__(self, code: RejectCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail


def check_offer(
    store: Store, offer: Offer, source_peer: str, wasm: bytes | None, limits: TargetLimits
) -> PreparedCopy:
    """Raise :class:`OfferRefused` with the reject code, or return the copy to persist."""
    if offer.sender != source_peer:
        raise OfferRefused(RejectCode.WRONG_SENDER, "OFFER sender is not the stream's peer")
    if limits.hosted >= limits.capacity:
        raise OfferRefused(RejectCode.NO_CAPACITY, f"hosting {limits.hosted} agents")
    if wasm is None or hashlib.sha256(wasm).digest() != offer.wasm_hash:
        raise OfferRefused(RejectCode.HASH_MISMATCH, "module missing or not matching its hash")
    try:
        manifest = parse_manifest(offer.manifest)
    except ManifestError as exc:
        raise OfferRefused(RejectCode.MALFORMED, f"manifest: {exc}") from None
    missing = [c for c in manifest.capabilities if c not in KNOWN_CAPABILITIES]
    if missing:
        raise OfferRefused(RejectCode.CAPABILITY_MISSING, ", ".join(sorted(missing)))
    policy = manifest.migration_policy
    if not policy.enabled:
        raise OfferRefused(RejectCode.POLICY_DENIED, "the agent's manifest disables migration")
    if policy.max_price_per_second is not None and limits.price > policy.max_price_per_second:
        raise OfferRefused(RejectCode.POLICY_DENIED, "this node's price is above the ceiling")

    stored = [row.blob for row in store.lineage_rows(offer.agent)]
    try:
        offered = [decode_entry(b) for b in offer.lineage]
        held = [decode_entry(b) for b in stored]
    except InvalidInput as exc:
        raise OfferRefused(RejectCode.MALFORMED, f"undecodable lineage entry: {exc}") from None
    chain, known = _join(held, offered)
    report = verify_lineage(chain, expected_agent=offer.agent, trusted={e.digest() for e in held})
    if not report.valid:
        detail = "; ".join(f"{p.code.value}: {p.message}" for p in report.problems[:5])
        raise OfferRefused(RejectCode.BAD_SIGNATURE, f"offered lineage invalid: {detail}")
    try:
        entries = chain_order(chain)
    except LineageRejected as exc:
        raise OfferRefused(RejectCode.LINEAGE_GAP, str(exc)) from None
    head = entries[-1]
    if not isinstance(head, Checkpoint) or head.encode() != offer.checkpoint:
        raise OfferRefused(RejectCode.LINEAGE_GAP, "the offered checkpoint is not the head")
    if head.kind is not CheckpointKind.HANDOFF or head.epoch != offer.epoch:
        raise OfferRefused(RejectCode.LINEAGE_GAP, "the head is not a HANDOFF checkpoint")
    holder, epoch = custodian(entries)
    if holder != public_key_from_peer_id(source_peer) or epoch != offer.epoch:
        raise OfferRefused(RejectCode.WRONG_SENDER, "custody does not end at the offering peer")
    if head.wasm_hash != offer.wasm_hash or head.manifest_hash != manifest.hash:
        raise OfferRefused(RejectCode.HASH_MISMATCH, "module or manifest hash differs")
    if head.budget <= 0:
        raise OfferRefused(RejectCode.BUDGET_INSUFFICIENT, "the agent has no budget left")
    if limits.resources is not None:
        verdict = admit_offer(limits.resources, manifest, offer, wasm, stored)
        if not verdict.admitted:
            raise OfferRefused(RejectCode.NO_CAPACITY, verdict.reason)

    fence = store.fence(offer.agent)
    if offer.epoch < fence:
        raise OfferRefused(RejectCode.STALE_EPOCH, f"epoch {offer.epoch} is below {fence}")
    existing = store.authority(offer.agent)
    if existing is not None and existing.state not in (
        AuthorityState.RETIRED,
        AuthorityState.HANDOFF_PENDING,
    ):
        raise OfferRefused(RejectCode.ALREADY_HELD, f"this node is {existing.state.value}")
    previous_tick = 0
    for entry in entries[:known]:
        if isinstance(entry, Checkpoint):
            previous_tick = entry.tick
    return PreparedCopy(
        entries=tuple(entries[known:]),
        previous_tick=previous_tick,
        checkpoint=head,
        wasm=wasm,
        manifest=manifest.canonical_bytes,
        chain=tuple(entries),
    )


def _join(held: list[LineageEntry], offered: list[LineageEntry]) -> tuple[list[LineageEntry], int]:
    """This node's stored chain plus the offered entries it lacks, and how many it holds.

    The offer may repeat entries this node already has (a full lineage, or a suffix that
    overlaps); what it adds must continue from this node's head, or the offer is refused.
    """
    if not held:
        return list(offered), 0
    held_digests = {e.digest() for e in held}
    head = held[-1].digest()
    new = [e for e in offered if e.digest() not in held_digests]
    if new and new[0].prev != head:
        raise OfferRefused(RejectCode.LINEAGE_GAP, "the offer does not extend our copy")
    if not new and offered and offered[-1].digest() != head:
        raise OfferRefused(RejectCode.LINEAGE_GAP, "the offer ends inside our copy")
    return held + new, len(held)
