"""A target's check of an OFFER before it makes the copy durable (pure).

The offer carries the agent's custody (genesis, then every epoch's certified record) and the
source's HANDOFF checkpoint — nothing per tick, so its size is the state plus the custody hops,
whatever the agent's age. The target verifies:

- the custody chain (signatures, certificates, joint quorums), continuing what it already holds
  and agreeing with it;
- that the sender owns the offered epoch;
- the checkpoint: this agent, that epoch, kind HANDOFF, signed by the owner;
- that module and manifest are the ones the genesis named, and that budget remains.

A failing check raises :class:`OfferInvalid` with the wire reject code and words.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from igor_p2p.authority.custody import EpochStart, InvalidCustody, chain_from_genesis, follow
from igor_p2p.errors import IgorError, InvalidInput
from igor_p2p.lineage.entries import decode_entry
from igor_p2p.lineage.envelope import Checkpoint, CheckpointKind
from igor_p2p.lineage.identity import BadSignature
from igor_p2p.wire.messages import Offer, RejectCode


class OfferInvalid(IgorError):
    """An OFFER the target refuses; ``code`` goes on the wire."""

    def __init__(self, code: RejectCode, reason: str, replay_ticks: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.replay_ticks = replay_ticks
        """With REPLAY_REQUIRED: the ticks this node replays (sent in the REJECT)."""


@dataclass(frozen=True)
class PreparedCopy:
    """A verified offer: the custody it proves and the entries to store."""

    custody: tuple[EpochStart, ...]
    checkpoint: Checkpoint
    entries: tuple[bytes, ...]

    @property
    def epoch_start(self) -> EpochStart:
        return self.custody[-1]


def offered_custody(offer: Offer, held: Sequence[EpochStart]) -> list[EpochStart]:
    """The whole custody the offer proves, continuing (and agreeing with) what is ``held``."""
    try:
        if offer.chain_after == 0:
            if not offer.chain:
                raise OfferInvalid(RejectCode.BAD_CUSTODY, "the offer carries no custody")
            known = _held_prefix(offer.chain, held)
            if known:
                # What this node verified and stored already comes first, byte for byte: only
                # the epochs after it are checked (an old agent's handoff stays cheap here).
                base = list(held[:known])
                starts = base + follow(base[-1], offer.chain[_links(held[:known]) :])
            else:
                starts = chain_from_genesis(offer.chain[0], offer.chain[1:])
        else:
            if len(held) < offer.chain_after:
                raise OfferInvalid(
                    RejectCode.LINEAGE_GAP,
                    f"the offer continues from epoch {offer.chain_after}, not held here",
                )
            base = list(held[: offer.chain_after])
            starts = base + follow(base[-1], offer.chain)
    except InvalidCustody as exc:
        raise OfferInvalid(RejectCode.BAD_CUSTODY, f"custody does not verify: {exc}") from None
    for mine, theirs in zip(held, starts, strict=False):
        if mine.digest != theirs.digest:
            raise OfferInvalid(
                RejectCode.BAD_CUSTODY,
                f"the offered custody disagrees with the one held here at epoch {mine.epoch}",
            )
    if starts[0].agent != offer.agent:
        raise OfferInvalid(RejectCode.BAD_CUSTODY, "the custody is another agent's")
    return starts


def _links(starts: Sequence[EpochStart]) -> int:
    return sum(len(s.links()) for s in starts)


def _held_prefix(chain: Sequence[bytes], held: Sequence[EpochStart]) -> int:
    """How many of ``held``'s starts ``chain`` begins with, byte for byte (0: none, or it
    differs somewhere: then the whole chain is verified and compared as usual)."""
    at = 0
    for count, start in enumerate(held):
        links = start.links()
        if tuple(chain[at : at + len(links)]) != links:
            return 0 if count == 0 else count
        at += len(links)
    return len(held)


def check_offer(
    offer: Offer, sender: bytes, held: Sequence[EpochStart], *, stored: bool = False
) -> PreparedCopy:
    """``stored``: ``held`` stays in this node's store (no pending copy of it is discarded), so
    the copy's entries leave out what is there already."""
    if offer.sender != sender:
        raise OfferInvalid(RejectCode.WRONG_SENDER, "the offer names another sender")
    custody = offered_custody(offer, held)
    current = custody[-1]
    if current.epoch != offer.epoch:
        raise OfferInvalid(
            RejectCode.STALE_EPOCH,
            f"the custody ends at epoch {current.epoch}, the offer is for epoch {offer.epoch}",
        )
    if current.owner != sender:
        raise OfferInvalid(RejectCode.WRONG_SENDER, "the sender does not own the offered epoch")
    try:
        checkpoint = decode_entry(offer.checkpoint)
    except InvalidInput as exc:
        raise OfferInvalid(RejectCode.MALFORMED, f"the checkpoint does not decode: {exc}") from None
    if not isinstance(checkpoint, Checkpoint):
        raise OfferInvalid(RejectCode.MALFORMED, "the offered head is not a checkpoint")
    if (
        checkpoint.agent != offer.agent
        or checkpoint.epoch != offer.epoch
        or checkpoint.kind is not CheckpointKind.HANDOFF
    ):
        raise OfferInvalid(
            RejectCode.MALFORMED, "the checkpoint is not this agent's HANDOFF at the epoch"
        )
    if checkpoint.signer != sender or checkpoint.owner != sender:
        raise OfferInvalid(RejectCode.BAD_SIGNATURE, "the checkpoint is not signed by the owner")
    try:
        checkpoint.verify_signature()
    except BadSignature:
        raise OfferInvalid(RejectCode.BAD_SIGNATURE, "the checkpoint signature fails") from None
    genesis = decode_entry(custody[0].genesis)
    assert isinstance(genesis, Checkpoint)
    if (checkpoint.wasm_hash, checkpoint.manifest_hash) != (
        genesis.wasm_hash,
        genesis.manifest_hash,
    ) or offer.wasm_hash != checkpoint.wasm_hash:
        raise OfferInvalid(RejectCode.HASH_MISMATCH, "the module differs from the genesis")
    if hashlib.sha256(offer.manifest).digest() != checkpoint.manifest_hash:
        raise OfferInvalid(RejectCode.HASH_MISMATCH, "the manifest bytes do not match")
    if checkpoint.budget <= 0:
        raise OfferInvalid(RejectCode.BUDGET_INSUFFICIENT, "the agent has no budget left")
    entries: list[bytes] = []
    kept = len(held) if stored and _held_prefix(offer.chain, held) == len(held) else 0
    for start in custody[kept:]:
        entries.extend(start.links())
    entries.append(offer.checkpoint)
    return PreparedCopy(tuple(custody), checkpoint, tuple(entries))
